"""When a write happened in the world it happened in: the business clock of the night it belongs to.

A nightly run of day D is scheduled for 02:00 of D+1 in the business time zone, or the time
TRUEUP_NIGHTLY_AT sets (orchestration/schedules.py). A run over a range posts each deal's order on
the night of its close (or of the range's first day, for a deal from before the range — released,
approved or retried in this run); a new ERP customer on the night of its first order; the CRM
write-backs on the range's last night. `ops.sor_writes.business_at` holds that time (UTC, naive)
beside the wall-clock `updated_at`: latency metrics read it, with no caps.

An intraday run (assets/publish/intraday.py) is in the business world while it runs: its writes
belong to the moment it confirmed them — the run's own clock (the wall clock in production), not
the next night.
"""
from __future__ import annotations

import datetime as dt
import json
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

from trueup.connectors.clock import NIGHTLY_AT
from trueup.connectors.warehouse import Warehouse

def night_at(day: dt.date, tz: str, at: dt.time = NIGHTLY_AT) -> dt.datetime:
    """The scheduled start of the nightly run of business day `day`, as naive UTC."""
    local = dt.datetime.combine(day + dt.timedelta(days=1), at, tzinfo=ZoneInfo(tz))
    return local.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _night(day: dt.date | None, first_day: dt.date, through: dt.date) -> dt.date:
    return min(max(day or first_day, first_day), through)


def stamp_business_time(wh: Warehouse, run_id: str, first_day: dt.date, through: dt.date, tz: str,
                        at: dt.datetime | None = None, nightly_at: dt.time = NIGHTLY_AT) -> int:
    """Give the writes this run confirmed their business time; returns how many. `at` (naive UTC):
    the business clock now, for a run that is not a night's (intraday) — every write it confirmed
    since the last stamp belongs to that moment. `nightly_at`: when a night starts (TRUEUP_NIGHTLY_AT)."""
    df = wh.query_df("SELECT write_id, target_system, target_object, payload FROM ops.sor_writes "
                     "WHERE run_id = :r AND state = 'confirmed' AND business_at IS NULL", {"r": run_id})
    if df.empty:
        return 0
    if at is not None:
        return _stage(wh, pd.DataFrame({"write_id": df["write_id"], "business_at": at}))
    payloads = [json.loads(p) for p in df["payload"]]
    order_night: dict[str, dt.date] = {}
    nights = []
    for obj, p in zip(df["target_object"], payloads):
        if obj == "sales_orders":
            day = _night(dt.date.fromisoformat(p["order_date"][:10]) if p.get("order_date") else None,
                         first_day, through)
            customer = p.get("customer_number")
            if customer:
                order_night[customer] = min(order_night.get(customer, day), day)
    for system, obj, p in zip(df["target_system"], df["target_object"], payloads):
        if system == "crm":
            nights.append(through)
        elif obj == "sales_orders":
            nights.append(_night(dt.date.fromisoformat(p["order_date"][:10]) if p.get("order_date") else None,
                                 first_day, through))
        else:   # an ERP customer: the night of its first order in this run
            nights.append(order_night.get(p.get("customer_number"), first_day))
    return _stage(wh, pd.DataFrame({"write_id": df["write_id"], "business_at": [night_at(n, tz, nightly_at) for n in nights]}))


def _stage(wh: Warehouse, staged: pd.DataFrame) -> int:
    with wh.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS business_time_stage"))
        conn.execute(sa.text("CREATE TEMP TABLE business_time_stage (write_id TEXT, business_at TIMESTAMP)"))
        wh.insert_df(conn, "temp" if wh.dialect == "duckdb" else "pg_temp", "business_time_stage", staged)
        conn.execute(sa.text("UPDATE ops.sor_writes SET business_at = s.business_at FROM business_time_stage s "
                             "WHERE ops.sor_writes.write_id = s.write_id"))
    return len(staged)
