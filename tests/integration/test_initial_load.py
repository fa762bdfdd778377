"""The initial load: sources whose history predates the platform's first business day.

The world lives 44 days (long enough for orders to be invoiced and invoices paid); the platform
starts on its 41st (TRUEUP_START_DATE). Its first
partition must load everything the CRM, the ERP tables and the ERP's export folders hold from
before it, on that day, so that after the first backfill the warehouse equals the sources
(recomputed from them, not from what Trueup derived) — and re-running the first day or the whole
range changes nothing, and source_vs_warehouse finds the first day whole.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from trueup.orchestration.runner import run_job
from tests.ingest_checks import _assert_equal_to_sources, raw_snapshot
from tests.world_fixtures import SMALL_WORLD, world_in_env

pytestmark = pytest.mark.slow

WORLD = dataclasses.replace(SMALL_WORLD, seed=17, scale=1.0, days=44, schema_drift_days=(),
                            golive_date=dt.date(2026, 10, 14))
FIRST = 40   # the platform's first business day


def test_the_first_partition_loads_the_history_before_it(tmp_path, monkeypatch):
    with world_in_env(monkeypatch, tmp_path / "home", cfg=WORLD) as world:
        days = world.days()
        first = days[FIRST]
        monkeypatch.setenv("TRUEUP_START_DATE", first.isoformat())
        settings = load_settings()
        outcome = run_job(settings, "sync_and_gate", first, days[-1])
        assert outcome.success, outcome.error

        wh = Warehouse(settings.warehouse_url)
        try:
            # the warehouse equals the sources, history included
            _assert_equal_to_sources(world, wh)
            # the history is real (records changed only before the first day) and landed on the first day
            for table in ("crm_companies", "crm_contacts", "crm_deals", "erp_customers", "erp_sales_orders",
                          "erp_invoices", "erp_payments"):
                parts = wh.query_df(f"SELECT min(_partition) AS lo, count(*) AS n FROM raw.{table} "
                                    f"WHERE updated_at < :d", {"d": first.isoformat()})
                assert parts["n"][0] > 0, f"{table}: nothing older than {first} to prove the initial load"
                assert parts["lo"][0] == first.isoformat(), table
            # the export folders before the first day were verified and recorded as loaded, by their own date
            loads = wh.query_df("SELECT export_date, status FROM ops.export_loads WHERE run_id = :r",
                                {"r": outcome.run_id})
            assert set(loads["export_date"]) == {d.isoformat() for d in days}
            assert set(loads["status"]) == {"loaded"}

            snapshot = raw_snapshot(wh)
            # re-running the first day, then the whole range, changes nothing
            assert run_job(settings, "sync_and_gate", first).success
            assert raw_snapshot(wh).equals(snapshot)
            assert run_job(settings, "sync_and_gate", first, days[-1]).success
            assert raw_snapshot(wh).equals(snapshot)

            # the nightly run of the first day: source_vs_warehouse reads it with its history, as the
            # ingest loaded it (nothing is published before go-live, the world's last day)
            monkeypatch.setenv("TRUEUP_PUBLISH_FROM", WORLD.golive.isoformat())
            recon = run_job(load_settings(), "nightly_sync", first)
            assert recon.success, recon.error
            found = wh.query_df("SELECT left_rows, right_rows, breaks_found FROM recon.runs WHERE run_id = :r "
                                "AND recon_name = 'source_vs_warehouse'", {"r": recon.run_id})
            breaks = wh.query_df("SELECT break_type, business_key, reason FROM recon.breaks WHERE status = 'open' "
                                 "AND recon_name = 'source_vs_warehouse'")
            why = "\n".join(f"{b.break_type} {b.business_key}: {b.reason}" for b in breaks.itertuples())
            assert len(found) == 1 and found["breaks_found"][0] == 0, why
            assert found["left_rows"][0] == found["right_rows"][0] > 0
        finally:
            wh.dispose()

