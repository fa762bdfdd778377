"""The nightly schedule: TRUEUP_NIGHTLY_AT (default 02:00) in the business time zone, for the
previous day."""
from __future__ import annotations

import datetime as dt

from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job


def build_nightly_schedule(nightly_job, at: dt.time):
    # for a daily-partitioned job this targets the last complete day, i.e. yesterday
    return build_schedule_from_partitioned_job(
        nightly_job, hour_of_day=at.hour, minute_of_hour=at.minute, name="nightly_sync_schedule",
        default_status=DefaultScheduleStatus.RUNNING,
        tags={"trueup/trigger": "schedule"},
    )
