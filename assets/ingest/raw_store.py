"""Landing into `raw`: a log of observed source versions, idempotent by version.

raw.<obj> keeps every version of every record Trueup has seen. A version is identified by
`_version_hash`, an md5 over its content (the declared columns, key and modification time
included, plus any carried-along new column that holds a value). Landing a batch inserts the
versions raw does not hold yet and removes nothing: a re-run of an old window no longer sees a
record that changed since (often through Trueup's own write-back), and that absence must not
erase the only version the warehouse has of it. Deletes arrive only as tombstones (CRM records
listed as archived). At-least-once extraction, exactly-once state.

raw.<obj>_current is the latest version of each key (modification time, then the later load),
tombstoned records left out.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from trueup.connectors.clock import utc_now
from trueup.connectors.warehouse import Warehouse, ident

from .objects import LOAD_COLUMNS, VERSION_HASH, SourceObject

RAW = "raw"
STAGE = "raw_stage"
NEW = "raw_new"


@dataclass
class LandResult:
    rows_seen: int = 0          # versions in the batch for this day
    rows_written: int = 0       # of which new to raw (the rest were already held)
    new_columns: list[str] = field(default_factory=list)


def version_hash_sql(obj: SourceObject, columns: list[str], alias: str = "") -> str:
    """md5 over a row's content. Declared columns always count (NULL as its own marker); a
    column the source added later counts only where it holds a value, so that adding a column
    to the table does not turn every version held before into a new one."""
    a = f"{alias}." if alias else ""
    sep = "chr(30)"
    declared = [f"coalesce('v' || {a}{ident(c)}, 'n')" for c in obj.columns]
    extra = [f"coalesce({sep} || '{ident(c)}=' || {a}{ident(c)}, '')"
             for c in sorted(c for c in columns if c not in obj.columns and not c.startswith("_"))]
    return f"md5({f' || {sep} || '.join(declared)}{''.join(' || ' + e for e in extra)})"


def land_versions(wh: Warehouse, obj: SourceObject, rows: pd.DataFrame, run_id: str, source_of,
                  days: list[str] = ()) -> dict[str, LandResult]:
    """Upsert the versions in `rows` (text columns plus `_partition`, the business day each
    version belongs to) into raw.<obj>, in one transaction. `source_of(day)` names where the
    rows came from. Returns per day (every day of `rows`, and every day in `days`) how many
    versions were seen and how many were new."""
    loaded_at = utc_now()
    extra = [c for c in rows.columns if c not in obj.columns and not c.startswith("_")]
    data_cols = list(obj.columns) + list(dict.fromkeys(extra))
    results = {d: LandResult() for d in days}
    with wh.begin() as conn:
        new_columns = ensure_raw_table(wh, conn, obj, data_cols)
        for d in results.values():
            d.new_columns = new_columns
        if len(rows):
            stage = rows.reindex(columns=data_cols + ["_partition"]).astype(object)
            stage = stage.where(stage.notna(), None)
            stage["_partition"] = stage["_partition"].astype(str)
            stage["_source"] = [source_of(p) for p in stage["_partition"]]
            counts = _upsert(wh, conn, obj, stage, data_cols, run_id, loaded_at)
            for day, (seen, new) in counts.items():
                r = results.setdefault(day, LandResult(new_columns=new_columns))
                r.rows_seen, r.rows_written = seen, new
        if new_columns or not _view_exists(wh, conn, obj):
            create_current_view(wh, conn, obj)
    return results


def _upsert(wh: Warehouse, conn, obj: SourceObject, stage: pd.DataFrame, data_cols: list[str], run_id: str,
            loaded_at: dt.datetime) -> dict[str, tuple[int, int]]:
    """Insert the staged versions raw does not hold; {day: (seen, new)}.

    Identical rows within one batch (an export file listing a row twice) are copies, not one
    version: the n-th copy gets its own identity, so a re-load of the same file adds nothing
    and the gate still sees both copies."""
    table = f"{RAW}.{ident(obj.raw_table)}"
    temp = "temp" if wh.dialect == "duckdb" else "pg_temp"
    stage_cols = data_cols + ["_partition", "_source"]
    for name in (STAGE, NEW):
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    conn.execute(sa.text(f"CREATE TEMP TABLE {STAGE} ({', '.join(f'{ident(c)} TEXT' for c in stage_cols)})"))
    wh.insert_df(conn, temp, STAGE, stage[stage_cols])
    h0 = version_hash_sql(obj, data_cols, "s")
    cols = ", ".join(ident(c) for c in stage_cols)
    conn.execute(sa.text(
        f"CREATE TEMP TABLE {NEW} AS SELECT {cols}, h AS {VERSION_HASH}, seen FROM ("
        f" SELECT {cols}, CASE WHEN copy_no = 1 THEN h0 ELSE md5(h0 || '#' || CAST(copy_no AS TEXT)) END AS h,"
        f"  1 AS seen FROM (SELECT s.*, {h0} AS h0, row_number() OVER (PARTITION BY {h0} ORDER BY s._partition)"
        f"  AS copy_no FROM {STAGE} s) c) n"))
    conn.execute(sa.text(f"UPDATE {NEW} SET seen = 0 WHERE NOT EXISTS "
                         f"(SELECT 1 FROM {table} r WHERE r.{VERSION_HASH} = {NEW}.{VERSION_HASH})"))
    data = ", ".join(ident(c) for c in data_cols)
    conn.execute(sa.text(
        f"INSERT INTO {table} ({data}, _run_id, _partition, _loaded_at, _source, {VERSION_HASH}) "
        f"SELECT {data}, :run, _partition, :at, _source, {VERSION_HASH} FROM {NEW} WHERE seen = 0"),
        {"run": run_id, "at": loaded_at})
    counts = conn.execute(sa.text(f"SELECT _partition, count(*), sum(1 - seen) FROM {NEW} GROUP BY _partition"))
    out = {str(p): (int(n), int(new or 0)) for p, n, new in counts}
    for name in (STAGE, NEW):
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    return out


def ensure_raw_table(wh: Warehouse, conn, obj: SourceObject, data_cols: list[str]) -> list[str]:
    """raw.<obj> in the version-log layout; a table of the earlier per-day layout is migrated
    in place first (the same step as `trueup migrate`). Returns the data columns added."""
    existing = wh.table_columns(conn, RAW, obj.raw_table)
    if existing and VERSION_HASH not in existing:
        migrate_raw_table(wh, conn, obj)
    new_columns = wh.ensure_text_table(conn, RAW, obj.raw_table, data_cols + LOAD_COLUMNS,
                                       typed={"_loaded_at": "TIMESTAMP"})
    if not existing and wh.dialect == "postgresql":
        _index_versions(conn, obj)
    return [c for c in new_columns if not c.startswith("_")]


def _index_versions(conn, obj: SourceObject) -> None:
    """PostgreSQL looks versions up by hash on every landing; DuckDB's hash join needs no index."""
    conn.execute(sa.text(f"CREATE INDEX IF NOT EXISTS {ident(obj.raw_table)}_version ON "
                         f"{RAW}.{ident(obj.raw_table)} ({VERSION_HASH})"))


def migrate_raw_table(wh: Warehouse, conn, obj: SourceObject) -> int:
    """Move raw.<obj> from the per-day layout to the version log: every row is kept, and gets
    its `_version_hash` (rows that were already copies of one another become numbered copies, as
    a batch's copies do). Re-runnable: rows that have a hash keep it. Returns rows hashed."""
    table = f"{RAW}.{ident(obj.raw_table)}"
    cols = wh.table_columns(conn, RAW, obj.raw_table)
    if not cols:
        return 0
    if VERSION_HASH not in cols:
        conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {VERSION_HASH} TEXT"))
        cols.append(VERSION_HASH)
    for c in obj.columns:   # a table landed before a declared column existed
        if c not in cols:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {ident(c)} TEXT"))
            cols.append(c)
    rid = "rowid" if wh.dialect == "duckdb" else "ctid"
    h0 = version_hash_sql(obj, cols, "t")
    n = conn.execute(sa.text(
        f"UPDATE {table} SET {VERSION_HASH} = x.h FROM (SELECT rid, CASE WHEN copy_no = 1 THEN h0 ELSE "
        f"md5(h0 || '#' || CAST(copy_no AS TEXT)) END AS h FROM (SELECT t.{rid} AS rid, {h0} AS h0, "
        f"row_number() OVER (PARTITION BY {h0} ORDER BY t._loaded_at, t._partition) AS copy_no "
        f"FROM {table} t) c) x WHERE {table}.{rid} = x.rid AND {table}.{VERSION_HASH} IS NULL")).rowcount
    if wh.dialect == "postgresql":
        _index_versions(conn, obj)
    create_current_view(wh, conn, obj)
    return int(n or 0)


def _view_exists(wh: Warehouse, conn, obj: SourceObject) -> bool:
    return bool(wh.table_columns(conn, RAW, obj.current_view))


def latest_version_sql(obj: SourceObject, where: str = "") -> str:
    """The latest version of each key among raw rows matching `where` (tombstones included), as
    a ranked subquery: `_rn = 1` is the latest. The later modification wins; between two
    contents of one modification time (a re-export that corrects a row), the later load."""
    return (f"SELECT *, row_number() OVER (PARTITION BY {ident(obj.key)} ORDER BY updated_at DESC NULLS LAST, "
            f"_loaded_at DESC, {VERSION_HASH} DESC) AS _rn FROM {RAW}.{ident(obj.raw_table)}"
            + (f" WHERE {where}" if where else ""))


def alive_sql(obj: SourceObject) -> str:
    return "coalesce(archived, 'false') <> 'true'" if obj.has_tombstones else "TRUE"


def create_current_view(wh: Warehouse, conn, obj: SourceObject) -> None:
    """raw.<obj>_current: the latest version of each key, deleted (archived) records removed."""
    cols = [c for c in wh.table_columns(conn, RAW, obj.raw_table)]
    select_cols = ", ".join(ident(c) for c in cols)
    # replaced, not dropped: PostgreSQL refuses to drop a view others read (validated.*_current);
    # columns only ever get appended, which a replace allows
    conn.execute(sa.text(
        f"CREATE OR REPLACE VIEW {RAW}.{ident(obj.current_view)} AS SELECT {select_cols} FROM ("
        f"{latest_version_sql(obj)}) latest WHERE _rn = 1 AND {alive_sql(obj)}"))


def land_partition(wh: Warehouse, obj: SourceObject, day: str, rows: pd.DataFrame, run_id: str,
                   source: str) -> LandResult:
    """`land_versions` for the rows of one day."""
    return land_partitions(wh, obj, {day: rows}, run_id, lambda _p: source)[day]


def land_partitions(wh: Warehouse, obj: SourceObject, frames: dict[str, pd.DataFrame], run_id: str, source_of,
                    earlier: pd.DataFrame | None = None) -> dict[str, LandResult]:
    """`land_versions` for rows given per day (`frames`: day → rows) plus rows that carry their
    own `_partition` (`earlier`: a look-back's, a read-back's)."""
    parts = [df.assign(_partition=day) for day, df in frames.items() if len(df)]
    if earlier is not None and len(earlier):
        parts.append(earlier)
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*obj.columns, "_partition"])
    return land_versions(wh, obj, rows, run_id, source_of, days=list(frames))
