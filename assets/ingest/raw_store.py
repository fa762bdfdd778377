"""Landing a day's batch into `raw`: delete-and-insert of the partition in one transaction.

Rows that an extraction window's look-back found for an earlier day are merged into that
day's partition by (key, updated_at), so a late-visible record is never lost and a re-run
never duplicates it.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from connectors.warehouse import Warehouse, ident

from .objects import LOAD_COLUMNS, SourceObject

RAW = "raw"


@dataclass
class LandResult:
    rows_written: int = 0
    rows_merged_earlier: int = 0
    new_columns: list[str] = field(default_factory=list)


def _with_load_columns(df: pd.DataFrame, partition: str, run_id: str, source: str, loaded_at: dt.datetime):
    out = df.copy()
    out["_run_id"] = run_id
    out["_partition"] = partition
    out["_loaded_at"] = loaded_at
    out["_source"] = source
    return out


def land_partition(wh: Warehouse, obj: SourceObject, partition: str, rows: pd.DataFrame, run_id: str,
                   source: str, earlier: pd.DataFrame | None = None) -> LandResult:
    """Replace partition `partition` of raw.<obj> with `rows` (text columns).

    `earlier`: look-back rows with a `_partition` column naming the earlier day they belong to.
    """
    return land_partitions(wh, obj, {partition: rows}, run_id, lambda _p: source, earlier)[partition]


def land_partitions(wh: Warehouse, obj: SourceObject, frames: dict[str, pd.DataFrame], run_id: str,
                    source_of, earlier: pd.DataFrame | None = None) -> dict[str, LandResult]:
    """Replace every partition in `frames` in ONE transaction (a backfill lands its whole range
    at once); look-back rows in `earlier` are merged into their own days by (key, updated_at)."""
    loaded_at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    extra = [c for df in frames.values() for c in df.columns if c not in obj.columns and not c.startswith("_")]
    data_cols = list(obj.columns) + list(dict.fromkeys(extra))
    results = {p: LandResult() for p in frames}
    table = f"{RAW}.{ident(obj.raw_table)}"
    with wh.begin() as conn:
        new_columns = wh.ensure_text_table(conn, RAW, obj.raw_table, data_cols + LOAD_COLUMNS,
                                           typed={"_loaded_at": "TIMESTAMP"})
        if frames:
            conn.execute(sa.text(f"DELETE FROM {table} WHERE _partition = :p"), [{"p": p} for p in frames])
        batches = [_with_load_columns(rows.reindex(columns=data_cols), p, run_id, source_of(p), loaded_at)
                   for p, rows in frames.items()]
        if batches:
            wh.insert_df(conn, RAW, obj.raw_table, pd.concat(batches, ignore_index=True))
        for p, rows in frames.items():
            results[p].rows_written = len(rows)
            results[p].new_columns = new_columns
        if earlier is not None and len(earlier):
            key = ident(obj.key)
            conn.execute(
                sa.text(f"DELETE FROM {table} WHERE _partition = :p AND {key} = :k AND updated_at = :u"),
                [{"p": p, "k": k, "u": u} for p, k, u in
                 zip(earlier["_partition"], earlier[obj.key], earlier["updated_at"])],
            )
            merged = [_with_load_columns(part.drop(columns="_partition").reindex(columns=data_cols), str(p),
                                         run_id, source_of(str(p)), loaded_at)
                      for p, part in earlier.groupby("_partition")]
            n = wh.insert_df(conn, RAW, obj.raw_table, pd.concat(merged, ignore_index=True))
            if results:  # reported once, on the first day of the range
                results[next(iter(results))].rows_merged_earlier = n
        if new_columns or not _view_exists(wh, conn, obj):
            create_current_view(wh, conn, obj)
    return results


def _view_exists(wh: Warehouse, conn, obj: SourceObject) -> bool:
    return bool(wh.table_columns(conn, RAW, obj.current_view))


def create_current_view(wh: Warehouse, conn, obj: SourceObject) -> None:
    """raw.<obj>_current: the latest version of each key, deleted (archived) records removed."""
    cols = [c for c in wh.table_columns(conn, RAW, obj.raw_table)]
    select_cols = ", ".join(ident(c) for c in cols)
    alive = "AND coalesce(archived, 'false') <> 'true'" if obj.has_tombstones else ""
    conn.execute(sa.text(f"DROP VIEW IF EXISTS {RAW}.{ident(obj.current_view)}"))
    conn.execute(sa.text(
        f"CREATE VIEW {RAW}.{ident(obj.current_view)} AS SELECT {select_cols} FROM ("
        f" SELECT *, row_number() OVER (PARTITION BY {ident(obj.key)}"
        f"  ORDER BY updated_at DESC, _partition DESC, _loaded_at DESC) AS _rn"
        f" FROM {RAW}.{ident(obj.raw_table)}) latest WHERE _rn = 1 {alive}"))
