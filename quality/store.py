"""Persisting a gate's outcome in the warehouse, in one transaction:
validated rows (partition replaced), quarantine entries (upserted, never duplicated),
releases of keys that now pass, and the gate result."""
from __future__ import annotations

import hashlib
import json

import pandas as pd
import sqlalchemy as sa

from trueup.connectors.clock import utc_now
from trueup.connectors.warehouse import Warehouse, column_names, ident
from trueup.connectors.warehouse_schema import QUALITY, ensure, ensure_in

from .batch import PARTITION
from .contracts.rules import Contract
from .gate import GateOutcome
from .pii import mask_frame

# What a gate evaluation was of: the day's batch from a source, publish's read-back of the ERP
# rows it created, a quarantine replay's re-read, the writes checked before sending, or quarantined
# rows checked again once the reference they lacked has landed (assets/gate/late_references.py).
# The ROI error rate counts the day's batches only (the sources' quality, each row once).
BATCH_KINDS = ("day", "read_back", "replay", "outbound", "recheck")


def ensure_quality_tables(wh: Warehouse, conn=None) -> None:
    """quality's tables in their current layout (connectors/warehouse_schema), once per process;
    with `conn`, inside that transaction."""
    if conn is None:
        ensure(wh, QUALITY)
    else:
        ensure_in(conn, QUALITY)


def quarantine_id(contract: str, business_key: str) -> str:
    return hashlib.sha256(f"{contract}|{business_key}".encode()).hexdigest()[:20]


def _data_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if not c.startswith("_") and c != "failed_expectations"]


def persist_gates(wh: Warehouse, outcomes: dict[str, GateOutcome], run_id: str,
                  replace_partition: bool = True, batch: str = "day") -> None:
    """Write the outcomes of several partitions of one contract in a single transaction;
    `batch` is what was evaluated (one of BATCH_KINDS)."""
    with wh.begin() as conn:
        ensure_quality_tables(wh, conn)
        if outcomes and next(iter(outcomes.values())).contract.direction == "outbound":
            # outbound rows are not stored as validated data: the ledger carries what passed
            for partition, outcome in outcomes.items():
                upsert_quarantine(wh, conn, outcome.contract, outcome.quarantined, run_id, utc_now(), partition)
                gate_result(conn, outcome, partition, run_id, "outbound")
            return
        for partition, outcome in outcomes.items():
            _persist_one(wh, conn, outcome, partition, run_id, replace_partition, kind=batch)
        if outcomes:
            c = next(iter(outcomes.values())).contract
            ensure_current_view(wh, conn, c.object, c.key)


def _persist_one(wh: Warehouse, conn, outcome: GateOutcome, partition: str, run_id: str,
                 replace_partition: bool, kind: str) -> None:
    c = outcome.contract
    table = f"validated.{ident(c.object)}"
    now = utc_now()
    cols = list(dict.fromkeys(_data_columns(outcome.passed) + _data_columns(outcome.quarantined)))
    wh.ensure_text_table(conn, "validated", c.object, cols + ["_partition", "_run_id", "_validated_at"],
                         typed={"_validated_at": "TIMESTAMP"})
    if replace_partition:
        conn.execute(sa.text(f"DELETE FROM {table} WHERE _partition = :p"), {"p": partition})
    released_keys: list[str] = []
    if not outcome.blocked and outcome.rows_passed:
        batch = outcome.passed.reindex(columns=wh.table_columns(conn, "validated", c.object)).copy()
        batch["_partition"], batch["_run_id"], batch["_validated_at"] = partition, run_id, now
        if not replace_partition:  # replay: the same version may already be there
            _delete_versions(conn, table, c.key, outcome.passed)
        wh.insert_df(conn, "validated", c.object, batch)
        released_keys = outcome.passed[c.key].astype(str).tolist()
    upsert_quarantine(wh, conn, c, outcome.quarantined, run_id, now, partition)
    if released_keys:
        _release(wh, conn, c.name, released_keys, now, run_id)
    gate_result(conn, outcome, partition, run_id, kind)


def gate_result(conn, outcome: GateOutcome, partition: str, run_id: str, batch: str = "day") -> None:
    if batch not in BATCH_KINDS:
        raise ValueError(f"unknown gate batch kind {batch!r}; one of {', '.join(BATCH_KINDS)}")
    c = outcome.contract
    conn.execute(sa.text(
        "INSERT INTO quality.gate_results (run_id, contract, contract_version, object, partition, direction, "
        "rows_in, rows_passed, rows_quarantined, blocked, evaluated_at, money_in, money_passed, "
        "money_quarantined, unexpected_counts, block_reason, gx_success, batch_kind) VALUES (:run_id, :contract, "
        ":version, :object, :partition, :direction, :rows_in, :rows_passed, :rows_quarantined, :blocked, :at, :mi, "
        ":mp, :mq, :counts, :reason, :gx, :batch)"),
        {"run_id": run_id, "contract": c.name, "version": c.version, "object": c.object, "partition": partition,
         "direction": c.direction, "rows_in": outcome.rows_in, "rows_passed": outcome.rows_passed,
         "rows_quarantined": outcome.rows_quarantined, "blocked": outcome.blocked, "at": outcome.evaluated_at,
         "mi": outcome.money_in, "mp": outcome.money_passed, "mq": outcome.money_quarantined,
         "counts": json.dumps(outcome.unexpected_counts), "reason": outcome.block_reason,
         "gx": outcome.gx_success, "batch": batch})


def _delete_versions(conn, table: str, key: str, rows: pd.DataFrame) -> None:
    params = [{"k": str(k), "u": u} for k, u in zip(rows[key], rows.get("updated_at", [None] * len(rows)))]
    if params:
        conn.execute(sa.text(f"DELETE FROM {table} WHERE {ident(key)} = :k AND updated_at = :u"), params)


def upsert_quarantine(wh: Warehouse, conn, c: Contract, q: pd.DataFrame | None, run_id: str, now,
                      partition: str | None = None) -> None:
    """Quarantine failing rows (with `failed_expectations`), one entry per business key: seen
    again, an entry is updated, never duplicated. `partition` defaults to each row's own.
    Every (key, business day) a row failed on is also kept in quality.quarantine_days, a range's
    earlier days included (the entry keeps the last)."""
    if q is None or q.empty:
        return
    data_cols = _data_columns(q)
    keys = _quarantine_keys(q, data_cols, c.key)
    staged = pd.DataFrame({
        "quarantine_id": [quarantine_id(c.name, k) for k in keys],
        "contract": c.name, "contract_version": c.version, "object": c.object,
        "business_key": keys, "partition": partition if partition is not None else q[PARTITION].astype(str).to_numpy(),
        "run_id": run_id,
        "failed_expectations": _json_lists(q["failed_expectations"]),
        "payload": _masked_payloads(q[data_cols], c.pii_columns),
        "record_version": q["updated_at"].astype(str).to_numpy() if "updated_at" in q else None,
        "first_seen_at": now, "last_seen_at": now, "attempts": 1, "status": "open",
        "resolved_at": pd.NaT, "resolution": None,
    })
    days = staged[["quarantine_id", "contract", "object", "business_key", "partition", "run_id", "first_seen_at"]]
    days = days.drop_duplicates(["quarantine_id", "partition"])
    staged = staged.drop_duplicates("quarantine_id", keep="last")
    _stage(wh, conn, "quarantine_stage", "quality.quarantine", staged)
    settled = _settled_later(conn, c)
    # seen again: refresh what failed and when; a discarded row stays discarded for the same version
    conn.execute(sa.text(
        "UPDATE quality.quarantine SET contract_version = s.contract_version, partition = s.partition, "
        "run_id = s.run_id, failed_expectations = s.failed_expectations, payload = s.payload, "
        "last_seen_at = s.last_seen_at, "
        "status = CASE WHEN quality.quarantine.status = 'discarded' AND "
        "  quality.quarantine.record_version = s.record_version THEN 'discarded' ELSE 'open' END, "
        "resolved_at = CASE WHEN quality.quarantine.status = 'discarded' AND "
        "  quality.quarantine.record_version = s.record_version THEN quality.quarantine.resolved_at ELSE NULL END, "
        "record_version = s.record_version "
        "FROM quarantine_stage s WHERE quality.quarantine.quarantine_id = s.quarantine_id "
        "AND s.partition >= quality.quarantine.partition" + settled))
    conn.execute(sa.text(
        "INSERT INTO quality.quarantine SELECT * FROM quarantine_stage s WHERE NOT EXISTS "
        "(SELECT 1 FROM quality.quarantine q WHERE q.quarantine_id = s.quarantine_id)" + settled))
    # the days it failed on, kept: the entry above moves to the latest day, the ROI marts count each day
    _stage(wh, conn, "quarantine_days_stage", "quality.quarantine_days", days)
    conn.execute(sa.text(
        "INSERT INTO quality.quarantine_days SELECT * FROM quarantine_days_stage s WHERE NOT EXISTS ("
        "SELECT 1 FROM quality.quarantine_days d WHERE d.quarantine_id = s.quarantine_id AND d.partition = s.partition)"))


def _settled_later(conn, c: Contract) -> str:
    """The condition (on the staged row `s`) under which a failure opens or refreshes its entry: no
    later day has settled the record. A day gated again after later days (a re-run, a backfill
    behind the nights) must not put back an entry for a version a later one replaced: not over an
    entry that records a later day's failure (the UPDATE's own `s.partition >= partition`), nor
    once a later day's version of the record passed its gate. The day's failure still counts in
    quality.quarantine_days."""
    if c.direction != "inbound" or not column_names(conn, "validated", c.object):
        return ""   # outbound rows are never stored as validated: the ledger carries what passed
    return (f" AND NOT EXISTS (SELECT 1 FROM validated.{ident(c.object)} v WHERE v._partition > s.partition "
            f"AND CAST(v.{ident(c.key)} AS TEXT) = s.business_key)")


def _stage(wh: Warehouse, conn, stage: str, like: str, rows: pd.DataFrame) -> None:
    """`rows` in the temp table `stage` (made like `like` on first use in the session, emptied first)."""
    conn.execute(sa.text(f"CREATE TEMP TABLE IF NOT EXISTS {stage} AS SELECT * FROM {like} WHERE false"))
    conn.execute(sa.text(f"DELETE FROM {stage}"))
    wh.insert_df(conn, _temp_schema(wh), stage, rows)


def _quarantine_keys(q: pd.DataFrame, data_cols: list[str], key: str) -> list[str]:
    """The business key per row; a row without one is still one quarantine entry, keyed by its content."""
    keys = q[key].astype(object).where(q[key].notna(), None).tolist() if key in q else [None] * len(q)
    keyless = [i for i, k in enumerate(keys) if k is None]
    if keyless:
        rows = q.iloc[keyless][data_cols]
        records = rows.astype(object).where(rows.notna(), None).to_dict("records")
        for i, r in zip(keyless, records):
            keys[i] = "missing-key:" + hashlib.sha256(json.dumps(r, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return [str(k) for k in keys]


def _json_lists(lists: pd.Series) -> list[str]:
    """JSON of each row's failed-rule list; the same few lists repeat over thousands of rows."""
    cache: dict[tuple, str] = {}
    return [cache[t] if (t := tuple(f)) in cache else cache.setdefault(t, json.dumps(list(t))) for f in lists]


def _masked_payloads(rows: pd.DataFrame, pii_columns: tuple[str, ...]) -> list[str]:
    """Each row as JSON with its personal data masked, built column-wise (pandas' JSON writer:
    per-row json.dumps cost ~0.5 s per 20k rows). Timestamps are written as text."""
    masked = mask_frame(rows, pii_columns)
    for col in masked.columns:
        if pd.api.types.is_datetime64_any_dtype(masked[col]):
            masked[col] = masked[col].astype(str).where(masked[col].notna(), None)
    if len(masked) == 0:
        return []
    if len(masked.columns) == 0:
        return ["{}"] * len(masked)
    # one JSON document per line: a line break inside a value is escaped, so "\n" splits rows only
    lines = masked.to_json(orient="records", lines=True, default_handler=str).rstrip("\n").split("\n")
    if len(lines) != len(masked):
        raise AssertionError(f"{len(lines)} payloads for {len(masked)} quarantined rows")
    return lines


def _temp_schema(wh: Warehouse) -> str:
    return "temp" if wh.dialect == "duckdb" else "pg_temp"


def _release(wh: Warehouse, conn, contract: str, keys: list[str], now, run_id: str) -> None:
    """A key whose current row passes is no longer quarantined (one set-based UPDATE)."""
    conn.execute(sa.text("CREATE TEMP TABLE IF NOT EXISTS release_stage (quarantine_id TEXT)"))
    conn.execute(sa.text("DELETE FROM release_stage"))
    wh.insert_df(conn, _temp_schema(wh), "release_stage",
                 pd.DataFrame({"quarantine_id": [quarantine_id(contract, k) for k in keys]}))
    conn.execute(sa.text("UPDATE quality.quarantine SET status = 'released', resolved_at = :at, "
                         "resolution = 'passed on ' || :run WHERE status = 'open' AND quarantine_id IN "
                         "(SELECT quarantine_id FROM release_stage)"), {"at": now, "run": run_id})


# -- a gate streamed chunk by chunk (assets/gate/run_gate.py) ----------------------------------
def validated_columns(wh: Warehouse, conn, obj: str, data_columns: list[str]) -> list[str]:
    """Make sure validated.<obj> exists with these data columns (schema drift adds columns)."""
    wh.ensure_text_table(conn, "validated", obj, list(data_columns) + ["_partition", "_run_id", "_validated_at"],
                         typed={"_validated_at": "TIMESTAMP"})
    return wh.table_columns(conn, "validated", obj)


def release_passed(conn, c: Contract, first: str, last: str, run_id: str, now) -> None:
    """Open entries whose record passed in this run, on the day of its failure or later, are
    released (one set-based UPDATE; a pass on an earlier day never releases a later failure)."""
    conn.execute(sa.text(
        f"UPDATE quality.quarantine SET status = 'released', resolved_at = :at, resolution = 'passed on ' || :run "
        f"WHERE status = 'open' AND contract = :c AND EXISTS (SELECT 1 FROM validated.{ident(c.object)} v "
        f"WHERE v._run_id = :run AND v._partition BETWEEN :a AND :b AND v._partition >= quality.quarantine.partition "
        f"AND CAST(v.{ident(c.key)} AS TEXT) = quality.quarantine.business_key)"),
        {"at": now, "run": run_id, "c": c.name, "a": first, "b": last})


def ensure_current_view(wh: Warehouse, conn, obj: str, key: str) -> None:
    """validated.<obj>_current: a record's current version, if that version passed its gate
    (a record whose latest version is quarantined is absent, not stale)."""
    cols = wh.table_columns(conn, "validated", obj)
    select_cols = ", ".join(ident(c) for c in cols)
    k = ident(key)
    conn.execute(sa.text(f"DROP VIEW IF EXISTS validated.{ident(obj)}_current"))
    conn.execute(sa.text(
        f"CREATE VIEW validated.{ident(obj)}_current AS SELECT {select_cols} FROM ("
        f" SELECT v.*, row_number() OVER (PARTITION BY v.{k} ORDER BY v._validated_at DESC) AS _rn"
        f" FROM validated.{ident(obj)} v JOIN raw.{ident(obj)}_current r"
        f"  ON v.{k} = r.{k} AND v.updated_at = r.updated_at) latest WHERE _rn = 1"))


# -- operator actions ---------------------------------------------------------------------
def open_quarantine(wh: Warehouse, contract: str | None = None) -> pd.DataFrame:
    ensure_quality_tables(wh)
    sql = ("SELECT quarantine_id, contract, contract_version, object, business_key, partition, failed_expectations, "
           "payload, first_seen_at, last_seen_at, attempts FROM quality.quarantine WHERE status = 'open'")
    params = {}
    if contract:
        sql += " AND contract = :c"
        params["c"] = contract
    return wh.query_df(sql + " ORDER BY contract, business_key", params)


def record_actions(conn, rows: list[dict]) -> None:
    if rows:
        conn.execute(sa.text("INSERT INTO quality.quarantine_actions (quarantine_id, action, actor, reason, acted_at, "
                             "run_id) VALUES (:id, :action, :actor, :reason, :at, :run)"), rows)


def count_attempts(wh: Warehouse, contract: str, still_failing: list[str], run_id: str, actor: str) -> None:
    """A replay that still fails: attempts + 1, and the attempt is recorded."""
    if not still_failing:
        return
    now = utc_now()
    ids = [quarantine_id(contract, k) for k in still_failing]
    with wh.begin() as conn:
        conn.execute(sa.text("UPDATE quality.quarantine SET attempts = attempts + 1, last_seen_at = :at "
                             "WHERE quarantine_id = :id"), [{"id": i, "at": now} for i in ids])
        record_actions(conn, [{"id": i, "action": "replay_still_failing", "actor": actor, "reason": None,
                               "at": now, "run": run_id} for i in ids])


def resolve(wh: Warehouse, quarantine_ids: list[str], status: str, actor: str, reason: str,
            run_id: str | None = None, only_open: bool = True) -> int:
    """Mark entries released or discarded — an explicit, recorded action (who, when, why)."""
    if status not in ("released", "discarded"):
        raise ValueError("status must be released or discarded")
    now = utc_now()
    ensure_quality_tables(wh)
    with wh.begin() as conn:
        found = wh.read_df(conn, "SELECT quarantine_id FROM quality.quarantine WHERE quarantine_id = :id" +
                           (" AND status = 'open'" if only_open else ""), {"id": quarantine_ids[0]}) \
            if len(quarantine_ids) == 1 else None
        if found is not None and found.empty:
            return 0
        conn.execute(sa.text("UPDATE quality.quarantine SET status = :s, resolved_at = :at, resolution = :why "
                             "WHERE quarantine_id = :id" + (" AND status = 'open'" if only_open else "")),
                     [{"s": status, "at": now, "why": reason, "id": i} for i in quarantine_ids])
        record_actions(conn, [{"id": i, "action": status, "actor": actor, "reason": reason, "at": now,
                               "run": run_id} for i in quarantine_ids])
    return len(quarantine_ids)
