"""Re-runs are stable end to end: after a backfill of the seeded history, the same backfill again
and then the last night again (`nightly_sync` for that day) leave the warehouse's state exactly
as it was — current raw and validated rows, open quarantine and every day a record was
quarantined, the ROI marts' quarantine counts, open breaks (ids, first seen, amounts) — and write nothing to the ERP or the CRM. On DuckDB and on PostgreSQL.

The world has a go-live in its middle, so the first backfill posts orders and customers to the
ERP and writes order numbers and receivables back to the CRM; those write-backs move the CRM
records' modification time past the backfilled days, which is what used to make a re-run lose
them.
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import pytest
import sqlalchemy as sa

from trueup.assets.ingest.objects import ALL_OBJECTS
from trueup.connectors.erp_schema import make_erp_engine
from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from trueup.orchestration.runner import run_job
from trueup.sandbox.crm.store import CrmStore
from tests.world_fixtures import SMALL_WORLD, make_world

pytestmark = pytest.mark.slow

WORLD = dataclasses.replace(SMALL_WORLD, scale=1.0, days=10, schema_drift_days=())
LOAD = {"_run_id", "_loaded_at", "_validated_at", "_source"}


def _frame(wh: Warehouse, sql: str, key: list[str]) -> pd.DataFrame:
    df = wh.query_df(sql)
    df = df[[c for c in df.columns if c not in LOAD]]
    df = df.astype(object).where(df.notna(), None).map(lambda v: None if v is None else str(v))
    return df.sort_values(key).reset_index(drop=True)


def warehouse_state(wh: Warehouse) -> dict[str, pd.DataFrame]:
    out = {}
    for name, obj in ALL_OBJECTS.items():
        out[f"raw.{name}_current"] = _frame(wh, f"SELECT * FROM raw.{name}_current", [obj.key])
        out[f"validated.{name}_current"] = _frame(wh, f"SELECT * FROM validated.{name}_current", [obj.key])
    out["open quarantine"] = _frame(wh, "SELECT quarantine_id, contract, business_key, partition, "
                                        "failed_expectations, first_seen_at FROM quality.quarantine "
                                        "WHERE status = 'open'", ["quarantine_id"])
    # every day a record was quarantined, and the ROI figures counted from it (quarantined records
    # per period): a re-run adds no day and moves no count
    out["quarantine days"] = _frame(wh, "SELECT quarantine_id, contract, business_key, partition, first_seen_at "
                                        "FROM quality.quarantine_days", ["quarantine_id", "partition"])
    out["roi quarantine counts"] = _frame(wh, "SELECT period, source_records, quarantined_records, "
                                              "quarantined_rows FROM marts.roi_summary", ["period"])
    out["open breaks"] = _frame(wh, "SELECT break_id, recon_name, break_type, business_key, left_amount, "
                                    "right_amount, amount_at_risk, first_seen_at, first_seen_as_of "
                                    "FROM recon.breaks WHERE status = 'open'", ["break_id"])
    return out


def source_state(world) -> dict[str, pd.DataFrame]:
    """What the systems of record hold, read from them directly."""
    engine = make_erp_engine(world.paths.erp_url)
    out = {}
    with engine.connect() as conn:
        for table in ("customers", "sales_orders"):
            rows = conn.execute(sa.text(f"SELECT * FROM {table}"))   # noqa: S608 - fixed names
            out[f"erp.{table}"] = pd.DataFrame(rows.fetchall(), columns=list(rows.keys())).astype(str) \
                .sort_values(list(rows.keys())[:1]).reset_index(drop=True)
    engine.dispose()
    store = CrmStore(world.paths.crm_db)
    for t in ("companies", "deals"):
        df = store.all_records(t, archived=None)
        out[f"crm.{t}"] = df.astype(str).sort_values("id").reset_index(drop=True)
    store.close()
    return out


def _assert_same(before: dict, after: dict, step: str) -> None:
    for name in before:
        pd.testing.assert_frame_equal(after[name], before[name], obj=f"{name} after {step}")


def _run(settings, *days):
    outcome = run_job(settings, "nightly_sync", *days)
    assert outcome.success, outcome.error
    return outcome


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_backfill_backfill_nightly_leave_state_and_sources_unchanged(backend, tmp_path, monkeypatch, request):
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    world = make_world(tmp_path / "home", cfg=WORLD, warehouse_url=url)
    try:
        for k, v in world.env.items():
            monkeypatch.setenv(k, v)
        settings = load_settings()
        days = world.days()
        _run(settings, days[0], days[-1])
        wh = Warehouse(settings.warehouse_url)
        first = warehouse_state(wh)
        sources = source_state(world)
        writes = wh.scalar("SELECT count(*) FROM ops.sor_writes WHERE state = 'confirmed'")
        # the first pass did post and write back, or this test would prove nothing
        assert len(sources["erp.sales_orders"]) and writes > 0
        assert (sources["erp.sales_orders"]["source"] == "integration").any()
        # and quarantined records on days of both ROI periods, so their counts are compared
        assert len(first["quarantine days"]) and (first["roi quarantine counts"]["quarantined_records"] != "0").all()
        # every live CRM deal and company is in the warehouse's current state
        for t in ("companies", "deals"):
            live = sources[f"crm.{t}"]
            live = set(live.loc[live["archived"] == "False", "id"])
            assert live == set(first[f"raw.crm_{t}_current"]["id"]), t

        _run(settings, days[0], days[-1])
        _assert_same(first, warehouse_state(wh), "the same backfill again")
        _assert_same(sources, source_state(world), "the same backfill again")

        _run(settings, days[-1])
        _assert_same(first, warehouse_state(wh), "the last night again")
        _assert_same(sources, source_state(world), "the last night again")
        assert wh.scalar("SELECT count(*) FROM ops.sor_writes WHERE state = 'confirmed'") == writes
        # no open break names a record that is live in its source
        live_deals = set(sources["crm.deals"].loc[sources["crm.deals"]["archived"] == "False", "id"])
        missing_in_crm = wh.query_df("SELECT business_key FROM recon.breaks WHERE status = 'open' "
                                     "AND recon_name = 'source_vs_warehouse' AND break_type = 'extra_key'")
        assert not {k.split(":", 1)[1] for k in missing_in_crm["business_key"]} & live_deals
        wh.dispose()
    finally:
        world.server.stop()
