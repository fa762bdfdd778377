"""Gate a range of partitions of one object: stream raw in chunks through the contract,
write validated rows and quarantine entries as they come, then prove agreement and
conservation — all in one warehouse transaction, so a failed proof leaves nothing behind.
No Dagster here."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from trueup.connectors.clock import utc_now
from trueup.connectors.warehouse import Warehouse, ident
from trueup.quality.batch import PARTITION
from trueup.quality.contracts.rules import Contract
from trueup.quality.gate import CHUNK_ROWS, ConservationError, GateOutcome, GateRun
from trueup.quality.data_docs import keep_results
from trueup.quality.references import load_references
from trueup.quality.reports import write_gate_report, write_index
from trueup.quality.store import (
    ensure_current_view,
    ensure_quality_tables,
    gate_result,
    release_passed,
    upsert_quarantine,
    validated_columns,
)

TOMBSTONE = "archived"
REPEATED = "gate_repeated"
QUARANTINE_BATCH_ROWS = 20_000


def batch_sql(obj: str, columns: list[str], key: str, repeated_table: str | None = None) -> str:
    """The rows of partitions :a..:b, one version per record and day: if a record has two
    versions in one day, the later one. Copies of the same version are all kept (the contract's
    uniqueness rule quarantines them), and so are rows without a business key.

    Only keys seen more than once in a day go through the ranking window: a window over the
    whole batch holds every column of every row (1.7 GB at 5M rows, measured), the rest streams.
    The repeated keys are found once and the rest is an outer join, which DuckDB plans as a
    hash anti-join: 1.7 s at 5M rows on one thread, against 3.7 s for the same as NOT EXISTS.
    `repeated_table` names a table of those keys found beforehand (`repeated_sql`), so that the
    gate's three reads of the batch do not each find them (1.1 s at 5M rows on one thread)."""
    t, k = f"raw.{ident(obj)}", ident(key)
    r_cols = ", ".join(f"r.{ident(c)}" for c in columns)
    cols = ", ".join(ident(c) for c in columns)
    in_range = "_partition BETWEEN :a AND :b"
    repeated = repeated_table or "repeated"
    return ("" if repeated_table else f"WITH repeated AS MATERIALIZED ({repeated_sql(obj, key)}) ") + (
            f"SELECT {r_cols} FROM {t} r LEFT JOIN {repeated} m ON m.p = r._partition AND m.k = r.{k} "
            f"WHERE r.{in_range} AND m.k IS NULL "
            f"UNION ALL SELECT {cols} FROM (SELECT {r_cols}, rank() OVER (PARTITION BY r._partition, r.{k} "
            f"ORDER BY r.updated_at DESC NULLS LAST, r._loaded_at DESC NULLS LAST) AS _version_rank "
            f"FROM {t} r JOIN {repeated} m ON m.p = r._partition AND m.k = r.{k} WHERE r.{in_range}) v "
            f"WHERE _version_rank = 1")


def repeated_sql(obj: str, key: str) -> str:
    """The (day, key) pairs of partitions :a..:b seen more than once in raw."""
    k = ident(key)
    return (f"SELECT _partition AS p, {k} AS k FROM raw.{ident(obj)} WHERE _partition BETWEEN :a AND :b "
            f"GROUP BY _partition, {k} HAVING count(*) > 1")


def gate_partitions(wh: Warehouse, contract: Contract, partitions: list[str], run_id: str, reports_dir: Path,
                    validator=None, chunk_rows: int = CHUNK_ROWS,
                    scratch_dir: Path | None = None, data_docs: bool = True) -> dict[str, tuple[GateOutcome, Path]]:
    """Gate every partition in `partitions` (a contiguous range) with one validation.
    `scratch_dir` (under TRUEUP_HOME) takes the keys GX's uniqueness check needs at the end,
    so that they wait on disk; without it they wait in memory. `data_docs`: keep each day's result
    in the home's GX project and render its Data Docs page (quality/data_docs.py).

    Memory is bounded by a chunk, not the batch: the warehouse counts the batch's rows per day
    and finds its duplicated keys, then raw streams through in chunks — GX validates them in a
    worker (keeping the key columns that uniqueness and references need across chunks), failing
    rows are quarantined chunk by chunk and their keys staged, and the passed rows go from raw
    to validated in one set-based INSERT … SELECT while GX finishes. (Appending them chunk by
    chunk kept every appended row in DuckDB's transaction memory: +1.5 GB at 5M rows, measured.)"""
    from trueup.assets.ingest.objects import ALL_OBJECTS

    obj, key = contract.object, contract.key
    first, last = min(partitions), max(partitions)
    params = {"a": first, "b": last}
    clock = _PhaseClock()
    references = load_references(wh, contract.references)
    with wh.begin() as conn:
        raw_columns = wh.table_columns(conn, "raw", obj)
        ensure_quality_tables(wh, conn)
        data_columns = [c for c in raw_columns if not c.startswith("_")] or list(ALL_OBJECTS[obj].columns)
        columns = validated_columns(wh, conn, obj, data_columns)
        conn.execute(sa.text(f"DELETE FROM validated.{ident(obj)} WHERE _partition BETWEEN :a AND :b"), params)
        _reset_failed_keys(conn)
        outcomes: dict[str, GateOutcome] = {}
        if raw_columns:
            shared = _find_repeated(wh, conn, obj, key, params)
            sql = batch_sql(obj, raw_columns, key, REPEATED if shared is not None else None)
            expected_rows, duplicates = _batch_facts(wh, conn, contract, sql, raw_columns, params)
            run = GateRun(contract, references, expected_rows, duplicates, validator, TOMBSTONE,
                          scratch_dir=scratch_dir)
            threads = run.duckdb_threads if wh.dialect == "duckdb" else None
            if threads:   # a database-wide setting: the stream's own connection shares it
                conn.execute(sa.text(f"SET threads = {int(threads)}"))
            try:
                clock.lap("rows per day + duplicated keys")
                now = utc_now()
                # partition order matters only across days: a key's quarantine entry records its latest failure
                ordered = sql + (" ORDER BY _partition" if first != last else "")
                failing = _FailingRows(wh, conn, contract, run_id, now)
                tables = {REPEATED: shared} if shared is not None else None
                for chunk in wh.chunks(ordered, params, chunk_rows, tables=tables):
                    _passed, quarantined = run.feed(chunk, keep_passed=False)
                    failing.add(quarantined)
                    del chunk, quarantined
                failing.flush()
                clock.lap("stream: split + quarantine")
                if threads:   # GX has only its short tail left: the copy gets every core (5M rows: 10.9 → 5.8 s)
                    conn.execute(sa.text("RESET threads"))
                # the passed rows go in while GX finishes its last chunk; if a proof below fails,
                # the transaction takes everything out again
                _insert_passed(conn, contract, sql, raw_columns, columns, params, run_id, now)
                clock.lap("write validated")
                outcomes = run.finish()
                clock.lap("wait for GX + agreement")
            except BaseException:
                run.abandon()
                raise
            finally:
                if threads:
                    try:
                        conn.execute(sa.text("RESET threads"))
                    except sa.exc.DBAPIError:   # an aborted transaction: its own error is the one to see
                        pass
        for p in partitions:  # a day with no rows still gets its (empty) gate result
            outcomes.setdefault(p, GateOutcome(contract, 0, 0, 0, {r.id: 0 for r in contract.rules}, True))
        blocked = [p for p, o in outcomes.items() if o.blocked]
        if blocked:  # nothing of a blocked batch is validated
            conn.execute(sa.text(f"DELETE FROM validated.{ident(obj)} WHERE _partition IN :ps").bindparams(
                sa.bindparam("ps", expanding=True)), {"ps": blocked})
        _check_written(wh, conn, contract, outcomes, params)
        release_passed(conn, contract, first, last, run_id, utc_now())
        for p in partitions:
            gate_result(conn, outcomes[p], p, run_id)
        ensure_current_view(wh, conn, obj, key)
        clock.lap("proofs at the target + results")
    for o in outcomes.values():
        o.phase_seconds = clock.laps
    reports = {p: (outcomes[p], write_gate_report(reports_dir, outcomes[p], p, run_id)) for p in partitions}
    write_index(reports_dir / "gates")
    if data_docs:   # TRUEUP_GX_DATA_DOCS
        for p, url in keep_results(reports_dir, {p: outcomes[p] for p in partitions}, run_id).items():
            outcomes[p].data_docs_url = url
    return reports


class _PhaseClock:
    """Wall seconds per phase of a gate run (asset metadata and the benchmark show where time goes)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = round(self.laps.get(name, 0.0) + now - self._t, 3)
        self._t = now


def _find_repeated(wh: Warehouse, conn, obj: str, key: str, params: dict) -> pa.Table | None:
    """On DuckDB, the batch's repeated (day, key) pairs, found once: a temp table for the gate's
    own transaction, and the same rows (few) as Arrow for the stream's connection, which cannot
    see that transaction. Elsewhere None: each read finds them itself."""
    if wh.dialect != "duckdb":
        return None
    conn.execute(sa.text(f"CREATE OR REPLACE TEMP TABLE {REPEATED} AS {repeated_sql(obj, key)}"), params)
    # read on the transaction's own DuckDB connection: types and nulls stay as they are
    return conn.connection.driver_connection.sql(f"SELECT p, k FROM {REPEATED}").to_arrow_table()


def _batch_facts(wh: Warehouse, conn, contract: Contract, sql: str, raw_columns: list[str],
                 params: dict) -> tuple[dict[str, int], dict[str, pd.DataFrame]]:
    """What the streamed gate must know of the batch as a whole, counted by the warehouse (no
    column of the whole batch comes into memory): rows per day, and per uniqueness rule the
    (day, value) pairs found more than once among live rows — "" counts as missing, as in
    `prepare_batch`, and a tombstone (archived = 'true') is not checked."""
    empty = pd.DataFrame({"p": pd.Series(dtype="str"), "v": pd.Series(dtype="str")})
    unique = [r for r in contract.rules if r.kind == "unique" and r.column in raw_columns
              and not (r.when and r.when[0] not in raw_columns)]   # else all missing: nothing duplicated
    needed = [PARTITION, TOMBSTONE]
    for r in unique:
        needed += [r.column, *([r.when[0]] if r.when else [])]
    needed = [c for c in dict.fromkeys(needed) if c in raw_columns]
    live = (f"NOT coalesce(CAST({ident(TOMBSTONE)} AS TEXT) = 'true', false)" if TOMBSTONE in raw_columns
            else "TRUE")
    bind = dict(params)
    # the batch's query runs once (materialised, only the columns needed), both counts read it
    parts = ["SELECT '' AS rule, CAST(_partition AS TEXT) AS p, NULL AS v, count(*) AS n FROM b GROUP BY 2"]
    for i, rule in enumerate(unique):
        v = f"CAST({ident(rule.column)} AS TEXT)"
        where = f"{live} AND {v} IS NOT NULL AND {v} <> ''"
        if rule.when:
            where += f" AND CAST({ident(rule.when[0])} AS TEXT) = :when_{i}"
            bind[f"when_{i}"] = rule.when[1]
        bind[f"rule_{i}"] = rule.id
        parts.append(f"SELECT :rule_{i}, CAST(_partition AS TEXT), {v}, count(*) FROM b WHERE {where} "
                     f"GROUP BY 2, 3 HAVING count(*) > 1")
    facts = wh.read_df(conn, f"WITH b AS MATERIALIZED (SELECT {', '.join(ident(c) for c in needed)} "
                             f"FROM ({sql}) s) " + " UNION ALL ".join(parts), bind)
    counts = facts[facts["rule"] == ""]
    expected = {p: int(n) for p, n in zip(counts["p"], counts["n"])}
    duplicates = {r.id: empty for r in contract.rules if r.kind == "unique"}
    for rule in unique:
        found = facts[facts["rule"] == rule.id]
        duplicates[rule.id] = found[["p", "v"]].reset_index(drop=True) if len(found) else empty
    return expected, duplicates


class _FailingRows:
    """Failing rows on their way to the quarantine, written in batches of QUARANTINE_BATCH_ROWS:
    each write is a few statements against the whole quarantine table, whatever its size."""

    def __init__(self, wh: Warehouse, conn, contract: Contract, run_id: str, now) -> None:
        self.wh, self.conn, self.contract, self.run_id, self.now = wh, conn, contract, run_id, now
        self.pending: list[pd.DataFrame] = []
        self.rows = 0

    def add(self, quarantined: pd.DataFrame) -> None:
        if len(quarantined):
            self.pending.append(quarantined)
            self.rows += len(quarantined)
        if self.rows >= QUARANTINE_BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        rows = pd.concat(self.pending, ignore_index=True) if len(self.pending) > 1 else self.pending[0]
        self.pending, self.rows = [], 0
        upsert_quarantine(self.wh, self.conn, self.contract, rows, self.run_id, self.now)
        _stage_failed_keys(self.wh, self.conn, rows[[PARTITION, self.contract.key]])


def _reset_failed_keys(conn) -> None:
    """gate_failed (p, k): the partition and business key of every failing row of this run."""
    conn.execute(sa.text("CREATE TEMP TABLE IF NOT EXISTS gate_failed (p TEXT, k TEXT)"))
    conn.execute(sa.text("DELETE FROM gate_failed"))


def _stage_failed_keys(wh: Warehouse, conn, keys) -> None:
    staged = keys.dropna()
    if len(staged):
        staged = staged.set_axis(["p", "k"], axis=1).astype(str)
        wh.insert_df(conn, "temp" if wh.dialect == "duckdb" else "pg_temp", "gate_failed", staged)


def _insert_passed(conn, contract: Contract, sql: str, raw_columns: list[str], columns: list[str], params: dict,
                   run_id: str, now) -> None:
    """validated ← the batch's rows whose (day, key) has no failing row. Every row without a
    key fails its contract's key rule, so keyless rows never pass."""
    k = ident(contract.key)
    shared = [c for c in columns if c in raw_columns and c not in ("_run_id", "_validated_at")]
    cols = ", ".join(ident(c) for c in shared)
    conn.execute(sa.text(
        f"INSERT INTO validated.{ident(contract.object)} ({cols}, _run_id, _validated_at) "
        f"SELECT {', '.join('b.' + ident(c) for c in shared)}, :run, :now FROM ({sql}) b "
        f"WHERE b.{k} IS NOT NULL AND b.{k} <> '' AND NOT EXISTS "
        f"(SELECT 1 FROM gate_failed f WHERE f.p = b._partition AND f.k = CAST(b.{k} AS TEXT))"),
        {**params, "run": run_id, "now": now})


def _check_written(wh: Warehouse, conn, contract: Contract, outcomes: dict[str, GateOutcome], params: dict) -> None:
    """What validated holds for the range is exactly what passed, rows and money
    (conservation at the target, counted by the warehouse itself)."""
    money = contract.money_column
    present = money and money in wh.table_columns(conn, "validated", contract.object)
    total = f"sum({wh.number_sql(ident(money))})" if present else "0"
    rows = conn.execute(sa.text(f"SELECT _partition, count(*), {total} FROM validated.{ident(contract.object)} "
                                f"WHERE _partition BETWEEN :a AND :b GROUP BY _partition"), params).fetchall()
    written = {p: (int(n), float(m or 0)) for p, n, m in rows}
    for p, o in outcomes.items():
        n, m = written.get(p, (0, 0.0))
        expected_n, expected_m = (0, 0.0) if o.blocked else (o.rows_passed, o.money_passed)
        if n != expected_n or abs(m - expected_m) > 0.005 * max(1, n):
            raise ConservationError(f"{contract.name} {p}: {expected_n} rows ({expected_m:.2f}) passed but "
                                    f"validated holds {n} rows ({m:.2f})")
