"""The daily partitions. Their start date and time zone are part of the definitions, so they
are read when the code location loads (TRUEUP_START_DATE / TRUEUP_TIMEZONE, else the seeded
sandbox world); nothing else is."""
from __future__ import annotations

import os

from dagster import DailyPartitionsDefinition

from orchestration.config import DEFAULT_HISTORY_START, SandboxPaths


def partition_settings(env=None) -> tuple[str, str]:
    env = os.environ if env is None else env
    start = env.get("TRUEUP_START_DATE")
    if not start:
        from pathlib import Path

        home = Path(env.get("TRUEUP_HOME") or "./.trueup").resolve()
        world = SandboxPaths(home / "sandbox").read_world() or {}
        start = world.get("start_date", DEFAULT_HISTORY_START.isoformat())
    return start, env.get("TRUEUP_TIMEZONE") or "UTC"


def daily_partitions() -> DailyPartitionsDefinition:
    start, tz = partition_settings()
    return DailyPartitionsDefinition(start_date=start, timezone=tz)
