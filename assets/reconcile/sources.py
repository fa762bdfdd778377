"""The live source rows of the days of a run, read through the ingest's own extractors (for
source_vs_warehouse). Knows nothing of Dagster."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pandas as pd

from trueup.assets.ingest.objects import ALL_OBJECTS, SourceObject

DEFAULT_OBJECTS = tuple(ALL_OBJECTS)


def day_window(day: str, tz: str) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(0), tzinfo=ZoneInfo(tz))
    return start, start + dt.timedelta(days=1)


def read_source_days(obj: SourceObject, days: list[str], tz: str, *, first_day: str | None = None, erp_engine=None,
                     landing_dir=None, crm_client=None) -> dict[str, tuple[pd.DataFrame | None, bool, str | None]]:
    """{day: (rows of the day as landed text, snapshot?, reason when unavailable)} for `days`.

    The ERP database and the CRM are read once over the whole span and split by day, as the
    ingest does: a search walk per day would pay the CRM's search rate limit (and its listing of
    every archived record) once per day of a backfill. Rows are split by the business day of
    their modification, so each day gets exactly what a read of that day alone returns.
    `first_day`, the first partition, is read with the history before it, as the ingest loads
    it (assets/ingest/history.py)."""
    from trueup.assets.ingest.history import BEGINNING, export_folders, latest_across_exports, on_or_after

    if obj.system == "erp_export":
        from trueup.assets.ingest.erp_extract import read_verified_export
        out = {}
        for day in days:
            try:
                files = [read_verified_export(landing_dir, f, {obj.name: obj})[1][obj.name]
                         for f in export_folders(landing_dir, day, first_day)]
            except Exception as exc:  # noqa: BLE001 - a missing or rejected export is reported, not compared
                out[day] = (None, True, str(exc))
                continue
            out[day] = (latest_across_exports(files, obj.key), True, None)
        return out
    start, end = day_window(min(days), tz)[0], day_window(max(days), tz)[1]
    if min(days) == first_day:
        start = BEGINNING
    if obj.system == "erp_db":
        from trueup.assets.ingest.erp_extract import extract_erp_table_range
        rows, _earlier, _drift = extract_erp_table_range(erp_engine, obj, start, end, tz)
    else:
        from trueup.assets.ingest.crm_extract import extract_crm_range
        rows = extract_crm_range(crm_client, obj, start, end, tz).rows
    if first_day:
        rows = on_or_after(rows, first_day)
    return {day: (rows[rows["_partition"] == day].drop(columns="_partition"), False, None) for day in days}


def read_sources_for_days(days: list[str], tz: str, objects=DEFAULT_OBJECTS, first_day: str | None = None,
                          **clients) -> dict[str, tuple[dict, dict]]:
    """{day: ({name: (SourceObject, rows, snapshot)} for the objects whose source could be read,
    {name: reason} for those that could not)}."""
    out: dict[str, tuple[dict, dict]] = {day: ({}, {}) for day in days}
    for name in objects:
        obj = ALL_OBJECTS[name]
        for day, (df, snapshot, reason) in read_source_days(obj, list(days), tz, first_day=first_day,
                                                            **clients).items():
            if df is None:
                out[day][1][name] = reason
            else:
                out[day][0][name] = (obj, df, snapshot)
    return out


def read_sources(day: str, tz: str, objects=DEFAULT_OBJECTS, first_day: str | None = None, **clients) -> tuple[dict, dict]:
    """One day of read_sources_for_days."""
    return read_sources_for_days([day], tz, objects, first_day, **clients)[day]


def source_lookup(tz: str, wh, *, erp_engine=None, crm_client=None):
    """(SourceObject, keys) -> the source's current rows of those keys, archived CRM records
    included: what source_vs_warehouse asks of records that left a day's window."""
    from trueup.assets.ingest.reread import reread

    def lookup(obj: SourceObject, keys: list[str]) -> pd.DataFrame:
        if obj.system == "erp_export":
            return pd.DataFrame(columns=[obj.key, "updated_at"])
        return reread(obj.name, [str(k) for k in keys], tz=tz, wh=wh, crm=crm_client, erp_engine=erp_engine)

    return lookup
