"""The nightly schedule: 02:00 in the business time zone, for the previous business day."""
from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from dagster import DagsterInstance, build_schedule_context

from trueup.orchestration.definitions import build_definitions
from tests.world_fixtures import assert_ingest_succeeded, tiny_world  # noqa: F401 - fixture


def _schedule(monkeypatch, tmp_path, tz: str | None):
    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRUEUP_START_DATE", "2026-09-01")
    if tz is None:
        monkeypatch.delenv("TRUEUP_TIMEZONE", raising=False)
    else:
        monkeypatch.setenv("TRUEUP_TIMEZONE", tz)
    defs = build_definitions()
    return defs, defs.resolve_schedule_def("nightly_sync_schedule")


def _tick(schedule, at: dt.datetime) -> list:
    with DagsterInstance.ephemeral() as instance:
        result = schedule.evaluate_tick(build_schedule_context(instance=instance, scheduled_execution_time=at))
    assert result.skip_message is None, result.skip_message
    return list(result.run_requests or [])


@pytest.mark.parametrize("tz", [None, "UTC", "Europe/Berlin"])
def test_schedule_at_two_requests_previous_day(monkeypatch, tmp_path, tz):
    _, schedule = _schedule(monkeypatch, tmp_path, tz)
    zone = tz or "UTC"
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == zone
    requests = _tick(schedule, dt.datetime(2026, 9, 5, 2, 0, tzinfo=ZoneInfo(zone)))
    assert [r.partition_key for r in requests] == ["2026-09-04"]
    assert requests[0].job_name == "nightly_sync"
    assert requests[0].tags.get("trueup/trigger") == "schedule"


def test_berlin_partitions_are_berlin_days(monkeypatch, tmp_path):
    defs, schedule = _schedule(monkeypatch, tmp_path, "Europe/Berlin")
    # 00:30 UTC on 5 Sept is already 02:30 in Berlin: the Berlin day 4 Sept is complete
    requests = _tick(schedule, dt.datetime(2026, 9, 5, 0, 30, tzinfo=dt.timezone.utc))
    assert [r.partition_key for r in requests] == ["2026-09-04"]
    # and the partition's window is the Berlin day (CEST = UTC+2), not the UTC day
    pdef = defs.resolve_job_def("nightly_sync").partitions_def
    window = pdef.time_window_for_partition_key("2026-09-04")
    assert window.start.astimezone(dt.timezone.utc) == dt.datetime(2026, 9, 3, 22, 0, tzinfo=dt.timezone.utc)
    assert window.end.astimezone(dt.timezone.utc) == dt.datetime(2026, 9, 4, 22, 0, tzinfo=dt.timezone.utc)
    # in winter (CET = UTC+1) the day boundary moves with the zone
    window = pdef.time_window_for_partition_key("2026-11-04")
    assert window.start.astimezone(dt.timezone.utc) == dt.datetime(2026, 11, 3, 23, 0, tzinfo=dt.timezone.utc)



@pytest.mark.slow
def test_berlin_nightly_lands_berlin_days(tiny_world, monkeypatch):
    """With TRUEUP_TIMEZONE=Europe/Berlin a partition holds the changes of the Berlin day."""
    import pandas as pd

    from trueup.connectors.warehouse import Warehouse
    from trueup.orchestration.config import load_settings
    from trueup.orchestration.runner import run_job
    from trueup.sandbox.crm.store import CrmStore

    monkeypatch.setenv("TRUEUP_TIMEZONE", "Europe/Berlin")
    settings = load_settings()
    days = tiny_world.days()
    outcome = run_job(settings, "sync_and_gate", days[0], days[-1])
    assert_ingest_succeeded(outcome)
    wh = Warehouse(settings.warehouse_url)
    # the synced range ends at midnight Berlin after the last day = 22:00 UTC
    end = pd.Timestamp(days[-1].isoformat(), tz="Europe/Berlin") + pd.Timedelta(days=1)
    assert end.tz_convert("UTC").hour == 22
    store = CrmStore(tiny_world.paths.crm_db)
    for t in ("companies", "contacts", "deals"):
        raw = wh.query_df(f"SELECT id, updated_at, _partition FROM raw.crm_{t}")
        assert len(raw) > 0
        berlin_day = pd.to_datetime(raw["updated_at"], utc=True, format="ISO8601").dt.tz_convert(
            "Europe/Berlin").dt.strftime("%Y-%m-%d")
        assert (raw["_partition"] == berlin_day).all(), raw[raw["_partition"] != berlin_day]
        # every live record last changed before the end of the last Berlin day is there, as it is now;
        # the ones changed in the last two UTC hours of the last day belong to the next Berlin day
        src = store.all_records(t, archived=False)
        end_ms = int(end.value // 1_000_000)
        synced = set(src.loc[src.updated_ms < end_ms, "id"].astype(str))
        later = set(src.loc[src.updated_ms >= end_ms, "id"].astype(str))
        current = wh.query_df(f"SELECT id, updated_at FROM raw.crm_{t}_current")
        assert synced <= set(current["id"]), t
        assert not (later & set(raw.loc[pd.to_datetime(raw["updated_at"], utc=True, format="ISO8601")
                                        >= end.tz_convert("UTC"), "id"])), t
    store.close()
