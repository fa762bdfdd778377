"""Nightly ingestion: the warehouse becomes an exact, idempotent copy of CRM and ERP."""
from __future__ import annotations

import pytest

from trueup.orchestration.config import load_settings
from trueup.orchestration.runner import run_job
from tests.ingest_checks import _wh, nightly_runs_make_warehouse_equal_to_sources, raw_snapshot
from tests.world_fixtures import world  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def test_nightly_runs_then_rerun_and_backfill_change_nothing(world):
    """Every night of the world makes the warehouse equal to the sources (drifted exports rejected,
    then loaded once fixed); after that, re-running a night and backfilling the whole range in one
    run change nothing. (One world lives the nights once for both halves: they cost a minute each.)"""
    nightly_runs_make_warehouse_equal_to_sources(world)
    settings = load_settings()
    days = world.days()
    wh = _wh()
    snapshot = raw_snapshot(wh)
    # re-running a partition changes nothing
    assert run_job(settings, "sync_and_gate", days[3]).success
    assert raw_snapshot(wh).equals(snapshot)
    # a backfill of the whole range, in one run, gives exactly what the nightly runs gave
    outcome = run_job(settings, "sync_and_gate", days[0], days[-1])
    assert outcome.success, outcome.error
    assert raw_snapshot(wh).equals(snapshot)
    # and it ran as a single run covering every partition
    runs = wh.query_df("SELECT DISTINCT partition FROM ops.sync_runs WHERE run_id = :r", {"r": outcome.run_id})
    assert len(runs) == len(days)
    wh.dispose()

