"""TRUEUP_NIGHTLY_AT: when the nightly schedule runs (business time zone), for the previous day; a
night's writes carry that business clock. Default 02:00; a bad value is one clear line."""
from __future__ import annotations

import datetime as dt

import pytest

from trueup.assets.publish.business_time import night_at
from trueup.orchestration.config import ConfigError, load_settings, nightly_at


def test_the_default_is_two_in_the_morning_and_a_set_time_is_read():
    assert nightly_at({}) == dt.time(2, 0)
    assert nightly_at({"TRUEUP_NIGHTLY_AT": "03:30"}) == dt.time(3, 30)
    assert load_settings({"TRUEUP_HOME": "/tmp/trueup-nightly-at", "TRUEUP_NIGHTLY_AT": "23:05"}).nightly_at == \
        dt.time(23, 5)


@pytest.mark.parametrize("bad", ["2", "24:00", "02:60", "2am", "02:00:00"])
def test_a_bad_time_is_one_line(bad):
    with pytest.raises(ConfigError, match=r"TRUEUP_NIGHTLY_AT=.* must be a time of day as HH:MM"):
        nightly_at({"TRUEUP_NIGHTLY_AT": bad})


def test_the_schedule_and_the_business_clock_follow_it(monkeypatch):
    from trueup.orchestration.definitions import build_definitions

    monkeypatch.setenv("TRUEUP_NIGHTLY_AT", "03:45")
    monkeypatch.setenv("TRUEUP_TIMEZONE", "Europe/Berlin")
    schedule = build_definitions().resolve_schedule_def("nightly_sync_schedule")
    assert schedule.cron_schedule == "45 3 * * *" and schedule.execution_timezone == "Europe/Berlin"
    # the night of 2026-09-10 starts at 03:45 Berlin time on the 11th (CEST: 01:45 UTC)
    assert night_at(dt.date(2026, 9, 10), "Europe/Berlin", nightly_at()) == dt.datetime(2026, 9, 11, 1, 45)
    assert night_at(dt.date(2026, 9, 10), "Europe/Berlin") == dt.datetime(2026, 9, 11, 0, 0)
