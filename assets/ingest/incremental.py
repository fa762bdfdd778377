"""One incremental ingestion of a CRM object or an ERP table over a range of business days:
extract the versions modified in the range (with the look-back), land them in raw as versions.
The Dagster assets call these; so do the tests that drive runs in any order. No Dagster here."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd

from trueup.connectors.warehouse import Warehouse

from .objects import SourceObject
from .raw_store import LandResult, land_versions


@dataclass
class IngestResult:
    days: dict[str, LandResult]                       # every day of the range, and look-back days
    echoes: dict[str, int] = field(default_factory=dict)   # per day: the platform's own writes seen again
    stats: dict = field(default_factory=dict)         # requests, pages, retries (CRM)
    new_source_columns: set[str] = field(default_factory=set)


def day_keys(windows: list[tuple[str, dt.datetime, dt.datetime]]) -> list[str]:
    return [key for key, _, _ in windows]


def ingest_crm(wh: Warehouse, client, obj: SourceObject, windows: list[tuple[str, dt.datetime, dt.datetime]],
               tz: str, run_id: str) -> IngestResult:
    """`windows`: (day, start, end) of each business day of the range, contiguous."""
    from .crm_extract import extract_crm_range
    from .echo import platform_echoes

    # one extraction for the whole range (one search walk, one archived listing)
    ex = extract_crm_range(client, obj, windows[0][1], windows[-1][2], tz)
    rows = pd.concat([ex.rows, ex.earlier], ignore_index=True) if len(ex.earlier) else ex.rows
    rows = _history_on_first_day(rows, windows)
    landed = land_versions(wh, obj, rows, run_id, lambda _p: f"crm:{obj.source_name}", days=day_keys(windows))
    return IngestResult(landed, platform_echoes(wh, obj.source_name, rows), ex.stats)


def ingest_erp_table(wh: Warehouse, engine, obj: SourceObject, windows: list[tuple[str, dt.datetime, dt.datetime]],
                     tz: str, run_id: str) -> IngestResult:
    from .erp_extract import extract_erp_table_range

    rows, earlier, drift = extract_erp_table_range(engine, obj, windows[0][1], windows[-1][2], tz)
    rows = pd.concat([rows, earlier], ignore_index=True) if len(earlier) else rows
    rows = _history_on_first_day(rows, windows)
    landed = land_versions(wh, obj, rows, run_id, lambda _p: f"erp_db:{obj.source_name}", days=day_keys(windows))
    return IngestResult(landed, new_source_columns=set(drift))


def _history_on_first_day(rows: pd.DataFrame, windows: list[tuple[str, dt.datetime, dt.datetime]]) -> pd.DataFrame:
    """A range that opens the history (its first window starts at the beginning of time: the
    first partition's, history.py) lands every older version on its first day."""
    from .history import on_or_after, opens_history

    return on_or_after(rows, windows[0][0]) if opens_history(windows) else rows
