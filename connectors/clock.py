"""The wall clock as the warehouse stores it: naive UTC (TIMESTAMP columns without a zone, the same
on DuckDB and PostgreSQL)."""
from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
