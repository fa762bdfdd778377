"""The live source rows of one day, read through the ingest's own extractors (for
source_vs_warehouse). Knows nothing of Dagster."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd

from assets.ingest.objects import ALL_OBJECTS, SourceObject

DEFAULT_OBJECTS = tuple(ALL_OBJECTS)


def day_window(day: str, tz: str) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(0), tzinfo=ZoneInfo(tz))
    return start, start + dt.timedelta(days=1)


def read_source_day(obj: SourceObject, day: str, tz: str, *, erp_engine=None, landing_dir=None,
                    crm_client=None) -> tuple[pd.DataFrame | None, bool, str | None]:
    """(rows of `day` as landed text, snapshot?, reason when unavailable)."""
    start, end = day_window(day, tz)
    if obj.system == "erp_db":
        from assets.ingest.erp_extract import extract_erp_table_range
        rows, _earlier, _drift = extract_erp_table_range(erp_engine, obj, start, end, tz)
        return rows[rows["_partition"] == day].drop(columns="_partition"), False, None
    if obj.system == "erp_export":
        from assets.ingest.erp_extract import read_verified_export
        try:
            _check, frames, _new = read_verified_export(landing_dir, day, {obj.name: obj})
        except Exception as exc:  # noqa: BLE001 - a missing or rejected export is reported, not compared
            return None, True, str(exc)
        return frames[obj.name], True, None
    from assets.ingest.crm_extract import extract_crm_range
    ex = extract_crm_range(crm_client, obj, start, end, tz)
    rows = ex.rows
    return rows[rows["_partition"] == day].drop(columns="_partition"), False, None


def read_sources(day: str, tz: str, objects=DEFAULT_OBJECTS, **clients) -> tuple[dict, dict]:
    """{name: (SourceObject, rows, snapshot)} for the objects whose source could be read, and
    {name: reason} for those that could not."""
    out, skipped = {}, {}
    for name in objects:
        obj = ALL_OBJECTS[name]
        df, snapshot, reason = read_source_day(obj, day, tz, **clients)
        if df is None:
            skipped[name] = reason
        else:
            out[name] = (obj, df, snapshot)
    return out, skipped
