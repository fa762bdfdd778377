"""The daily partitions. Their start date and time zone are part of the definitions, so they
are read when the code location loads (TRUEUP_START_DATE / TRUEUP_TIMEZONE, from the
environment or the TRUEUP_HOME's settings file); nothing else is."""
from __future__ import annotations

from dagster import DailyPartitionsDefinition

from trueup.orchestration.config import DEFAULT_START_DATE, settings_sources


def partition_settings(env=None) -> tuple[str, str]:
    values = settings_sources(env)
    return values.get("TRUEUP_START_DATE") or DEFAULT_START_DATE.isoformat(), values.get("TRUEUP_TIMEZONE") or "UTC"


def daily_partitions() -> DailyPartitionsDefinition:
    start, tz = partition_settings()
    return DailyPartitionsDefinition(start_date=start, timezone=tz)
