"""The nightly schedule: 02:00 in the business time zone, for the previous day."""
from __future__ import annotations

from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job

from trueup.assets.publish.business_time import NIGHTLY_RUN_HOUR


def build_nightly_schedule(nightly_job):
    # for a daily-partitioned job this targets the last complete day, i.e. yesterday
    return build_schedule_from_partitioned_job(
        nightly_job, hour_of_day=NIGHTLY_RUN_HOUR, minute_of_hour=0, name="nightly_sync_schedule",
        default_status=DefaultScheduleStatus.RUNNING,
        tags={"trueup/trigger": "schedule"},
    )
