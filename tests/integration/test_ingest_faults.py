"""Ingestion against a misbehaving CRM: 5xx, rate limits, latency and dropped connections are
retried to a correct result; a bad token fails fast; a >10,000-change day lands completely."""
from __future__ import annotations

import time

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance

from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from trueup.orchestration.runner import run_job
from trueup.sandbox.crm.store import CrmStore
from tests.source_compare import crm_source, crm_warehouse, erp_source, erp_warehouse
from tests.world_fixtures import assert_ingest_succeeded, tiny_world  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

CRM_ASSETS = ("raw/crm_companies", "raw/crm_contacts", "raw/crm_deals")


def _wh() -> Warehouse:
    return Warehouse(load_settings().warehouse_url)


def test_sync_under_injected_faults_is_correct_and_records_retries(tiny_world, monkeypatch):
    # the platform paces itself for HubSpot's default limits (100 per 10 s, 5 searches/s), above
    # the sandbox's tightened ones: it meets 429s and must ride them out
    monkeypatch.delenv("TRUEUP_CRM_REQUESTS_PER_10S")
    monkeypatch.delenv("TRUEUP_CRM_SEARCHES_PER_SECOND")
    tiny_world.server.set_knobs(error_rate_5xx=0.2, drop_rate=0.05, latency_ms=5, rate_limit_10s=25,
                                search_per_second=2, seed=7)
    settings = load_settings()
    t0 = time.monotonic()
    outcome = run_job(settings, "sync_and_gate", tiny_world.days()[0], tiny_world.days()[-1])
    elapsed = time.monotonic() - t0
    assert_ingest_succeeded(outcome)
    stats = tiny_world.server.stats()
    # the sandbox really did misbehave
    assert stats["faults"], stats
    assert any(s.startswith("5") for s in stats["requests_by_status"]), stats["requests_by_status"]
    assert stats["rate_limited_by_policy"], stats  # … and pushed back with 429s

    wh = _wh()
    for t in ("companies", "contacts", "deals"):
        pd.testing.assert_frame_equal(crm_warehouse(wh, t), crm_source(tiny_world.paths.crm_db, t), obj=f"crm {t}")
    for t in ("customers", "sales_orders", "invoices"):
        pd.testing.assert_frame_equal(erp_warehouse(wh, t), erp_source(tiny_world.paths.erp_url, t), obj=f"erp {t}")

    facts = wh.query_df("SELECT asset, partition, attempt, status, retries FROM ops.sync_runs WHERE run_id = :r",
                        {"r": outcome.run_id})
    crm = facts[facts.asset.isin(CRM_ASSETS)]
    assert set(crm.status) == {"success"}
    assert crm.retries.sum() > 0, crm
    # every CRM day of the range was recorded
    assert crm.groupby("asset").partition.nunique().to_dict() == {a: len(tiny_world.days()) for a in CRM_ASSETS}

    # the retries are visible on the materialisations too
    with DagsterInstance.get() as instance:
        retries = 0
        for name in ("crm_companies", "crm_contacts", "crm_deals"):
            event = instance.get_latest_materialization_event(AssetKey(["raw", name]))
            assert event is not None and event.run_id == outcome.run_id
            retries += event.asset_materialization.metadata["retries"].value
    assert retries == crm.retries.sum() > 0


def test_wrong_token_fails_fast_with_clear_message(tiny_world, monkeypatch):
    monkeypatch.setenv("TRUEUP_CRM_TOKEN", "not-the-token")
    settings = load_settings()
    day = tiny_world.days()[0]
    t0 = time.monotonic()
    outcome = run_job(settings, "sync_and_gate", day)
    elapsed = time.monotonic() - t0
    assert not outcome.success
    # not retried with backoff (eight retries would take minutes); each CRM asset tried once is asserted below
    assert elapsed < 60, f"a 401 must not be retried (took {elapsed:.1f}s)"
    err = outcome.error
    assert "401" in err and "token" in err.lower(), err
    assert any(f"crm_{t}" in err or f"CRM {t}" in err for t in ("companies", "contacts", "deals")), err
    assert "not-the-token" not in err  # the credential never appears

    facts = _wh().query_df("SELECT asset, attempt, status, error_class, error_message FROM ops.sync_runs "
                           "WHERE run_id = :r AND asset LIKE 'raw/%'", {"r": outcome.run_id})
    crm = facts[facts.asset.isin(CRM_ASSETS)]
    assert len(crm) == 3, facts  # each CRM asset tried once …
    assert set(crm.attempt) == {1}  # … and never retried
    assert set(crm.status) == {"failure"}
    assert set(crm.error_class) == {"permanent"}
    assert crm.error_message.str.contains("401").all()
    # the ERP assets are unaffected
    assert set(facts.loc[~facts.asset.isin(CRM_ASSETS), "status"]) == {"success"}


def test_more_than_10000_changes_with_one_timestamp_land_completely(tiny_world):
    day = tiny_world.days()[1]
    stamp_ms = int(pd.Timestamp(f"{day.isoformat()}T13:37:00.123Z").value // 1_000_000)
    store = CrmStore(tiny_world.paths.crm_db)
    first_id = int(store.all_records("deals", archived=None)["id"].astype("int64").max()) + 1
    n = 12_000
    ids = list(range(first_id, first_id + n))
    store.load_records("deals", pd.DataFrame({
        "id": ids, "created_ms": stamp_ms - 86_400_000, "updated_ms": stamp_ms, "archived": False,
        "dealname": [f"Bulk deal {i}" for i in ids], "amount": "100.00", "deal_currency_code": "EUR",
        "dealstage": "appointmentscheduled", "pipeline": "default",
    }))
    store.close()

    settings = load_settings()
    # the sandbox runs without rate limits here: let the client go faster than the HubSpot defaults
    fast = {"resources": {"crm": {"config": {"requests_per_10s": 2000, "searches_per_second": 100}}}}
    outcome = run_job(settings, "sync_and_gate", day, run_config=fast)
    assert_ingest_succeeded(outcome)

    wh = _wh()
    landed = wh.query_df("SELECT id, count(*) AS n FROM raw.crm_deals WHERE _partition = :p "
                         "AND CAST(id AS BIGINT) >= :lo GROUP BY id", {"p": day.isoformat(), "lo": first_id})
    assert len(landed) == n and set(landed["n"]) == {1}
    assert set(landed["id"].astype(int)) == set(ids)
    current = wh.query_df("SELECT id, count(*) AS n FROM raw.crm_deals_current "
                          "WHERE CAST(id AS BIGINT) >= :lo GROUP BY id", {"lo": first_id})
    assert len(current) == n and set(current["n"]) == {1}
    # and the day's ordinary (live) changes were not crowded out
    store = CrmStore(tiny_world.paths.crm_db)
    src = store.all_records("deals", archived=False)
    store.close()
    day_start = int(pd.Timestamp(day.isoformat(), tz="UTC").value // 1_000_000)
    in_day = src[(src.updated_ms >= day_start) & (src.updated_ms < day_start + 86_400_000)]
    ordinary = set(in_day.loc[~in_day["id"].isin(ids), "id"].astype(str))
    assert ordinary, "the seeded day has changes of its own"
    part = set(wh.query_df("SELECT id FROM raw.crm_deals WHERE _partition = :p", {"p": day.isoformat()})["id"])
    assert ordinary <= part
