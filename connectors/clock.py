"""The wall clock as the warehouse stores it: naive UTC (TIMESTAMP columns without a zone, the same
on DuckDB and PostgreSQL); and when the nightly run of a business day starts by default."""
from __future__ import annotations

import datetime as dt


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


#: the nightly run of day D starts at this time of D+1 in the business time zone, unless
#: TRUEUP_NIGHTLY_AT sets another (the schedule, and the business clock of a night's writes)
NIGHTLY_AT = dt.time(2, 0)
