"""Gate a range of partitions of one object: stream raw in chunks through the contract,
write validated rows and quarantine entries as they come, then prove agreement and
conservation — all in one warehouse transaction, so a failed proof leaves nothing behind.
No Dagster here."""
from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from connectors.warehouse import Warehouse, ident
from quality.batch import PARTITION
from quality.contracts.rules import Contract
from quality.gate import CHUNK_ROWS, ConservationError, GateOutcome, GateRun, whole_batch_columns
from quality.references import load_references
from quality.reports import write_gate_report
from quality.store import (
    QUALITY_DDL,
    _now,
    append_validated,
    ensure_current_view,
    gate_result,
    release_passed,
    upsert_quarantine,
    validated_columns,
)

TOMBSTONE = "archived"


def batch_sql(obj: str, columns: list[str], key: str) -> str:
    """The rows of partitions :a..:b, one version per record and day: if a record has two
    versions in one day, the later one. Copies of the same version are all kept (the contract's
    uniqueness rule quarantines them), and so are rows without a business key.

    Only keys seen more than once in a day go through the ranking window: a window over the
    whole batch holds every column of every row (1.7 GB at 5M rows, measured), the rest streams."""
    t, k = f"raw.{ident(obj)}", ident(key)
    cols = ", ".join(ident(c) for c in columns)
    r_cols = ", ".join(f"r.{ident(c)}" for c in columns)
    in_range = "_partition BETWEEN :a AND :b"
    return (f"WITH repeated AS (SELECT _partition AS p, {k} AS k FROM {t} WHERE {in_range} "
            f"GROUP BY _partition, {k} HAVING count(*) > 1) "
            f"SELECT {cols} FROM {t} r WHERE {in_range} AND NOT EXISTS "
            f"(SELECT 1 FROM repeated m WHERE m.p = r._partition AND m.k = r.{k}) "
            f"UNION ALL SELECT {cols} FROM (SELECT {r_cols}, rank() OVER (PARTITION BY r._partition, r.{k} "
            f"ORDER BY r.updated_at DESC NULLS LAST, r._loaded_at DESC NULLS LAST) AS _version_rank "
            f"FROM {t} r JOIN repeated m ON m.p = r._partition AND m.k = r.{k} WHERE r.{in_range}) v "
            f"WHERE _version_rank = 1")


def gate_partitions(wh: Warehouse, contract: Contract, partitions: list[str], run_id: str, reports_dir: Path,
                    validator=None, chunk_rows: int = CHUNK_ROWS) -> dict[str, tuple[GateOutcome, Path]]:
    """Gate every partition in `partitions` (a contiguous range) with one validation.

    Memory is bounded by a chunk, not the batch: the columns GX must see whole (uniqueness,
    references) are read first, then raw streams through in chunks; each chunk's failing rows
    are quarantined and its passed rows appended to validated (as Arrow: DuckDB loads them
    without holding the GIL, so GX keeps validating the previous chunk meanwhile)."""
    from assets.ingest.objects import ALL_OBJECTS

    obj, key = contract.object, contract.key
    first, last = min(partitions), max(partitions)
    params = {"a": first, "b": last}
    references = load_references(wh, contract.references)
    with wh.begin() as conn:
        raw_columns = wh.table_columns(conn, "raw", obj)
        for ddl in QUALITY_DDL:
            conn.execute(sa.text(ddl))
        data_columns = [c for c in raw_columns if not c.startswith("_")] or list(ALL_OBJECTS[obj].columns)
        columns = validated_columns(wh, conn, obj, data_columns)
        conn.execute(sa.text(f"DELETE FROM validated.{ident(obj)} WHERE _partition BETWEEN :a AND :b"), params)
        outcomes: dict[str, GateOutcome] = {}
        if raw_columns:
            sql = batch_sql(obj, raw_columns, key)
            whole_cols = [c for c in [PARTITION, TOMBSTONE, *whole_batch_columns(contract)] if c in raw_columns]
            whole = wh.frame(f"SELECT {', '.join(ident(c) for c in whole_cols)} FROM ({sql}) b", params)
            run = GateRun(contract, references, whole if len(whole.columns) else _empty(whole_cols),
                          validator, TOMBSTONE)
            big = len(whole) > 4 * chunk_rows
            del whole
            try:
                if big:  # a large batch: its whole-batch checks finish (and free their columns) before streaming
                    run.gx.drain()
                now = _now()
                # partition order matters only across days: a key's quarantine entry records its latest failure
                ordered = sql + (" ORDER BY _partition" if first != last else "")
                for chunk in wh.frames(ordered, params, chunk_rows):
                    passed, quarantined = run.feed(chunk)
                    append_validated(wh, conn, obj, passed, columns, run_id, now)
                    upsert_quarantine(wh, conn, contract, quarantined, run_id, now)
                    del chunk, passed, quarantined
                outcomes = run.finish()   # if a proof fails, the transaction takes everything out again
            except BaseException:
                run.abandon()
                raise
        for p in partitions:  # a day with no rows still gets its (empty) gate result
            outcomes.setdefault(p, GateOutcome(contract, 0, 0, 0, {r.id: 0 for r in contract.rules}, True))
        blocked = [p for p, o in outcomes.items() if o.blocked]
        if blocked:  # nothing of a blocked batch is validated
            conn.execute(sa.text(f"DELETE FROM validated.{ident(obj)} WHERE _partition IN :ps").bindparams(
                sa.bindparam("ps", expanding=True)), {"ps": blocked})
        _check_written(wh, conn, contract, outcomes, params)
        release_passed(conn, contract, first, last, run_id, _now())
        for p in partitions:
            gate_result(conn, outcomes[p], p, run_id)
        ensure_current_view(wh, conn, obj, key)
    return {p: (outcomes[p], write_gate_report(reports_dir, outcomes[p], p, run_id)) for p in partitions}


def _empty(columns: list[str]):
    import pandas as pd

    return pd.DataFrame({c: pd.Series(dtype="str") for c in columns})


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
