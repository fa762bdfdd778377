"""The nightly-ingestion check shared by the DuckDB and PostgreSQL variants: the warehouse becomes
an exact, idempotent copy of CRM and ERP (compared with the sources, not with what Trueup derived)."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from trueup.connectors.erp_schema import make_erp_engine
from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from trueup.orchestration.runner import run_job
from trueup.sandbox.erp.exports import export_rows_from_db, write_export
from trueup.sandbox.generator.world import read_defects
from tests.source_compare import crm_source, crm_warehouse, erp_source, erp_warehouse


def _wh() -> Warehouse:
    return Warehouse(load_settings().warehouse_url)


def _fix_export(world, day: dt.date) -> None:
    """The ERP team re-exports a drifted day correctly."""
    engine = make_erp_engine(world.paths.erp_url)
    inv, pay = export_rows_from_db(engine, day)
    engine.dispose()
    write_export(world.paths.landing_dir, day, inv, pay)


def _assert_equal_to_sources(world, wh: Warehouse) -> None:
    for t in ("companies", "contacts", "deals"):
        pd.testing.assert_frame_equal(crm_warehouse(wh, t), crm_source(world.paths.crm_db, t), obj=f"crm {t}")
    for t in ("customers", "sales_orders", "invoices"):
        pd.testing.assert_frame_equal(erp_warehouse(wh, t), erp_source(world.paths.erp_url, t), obj=f"erp {t}")
    # the export job's orphan payments exist only in the exports; everything else matches the ERP
    orphans = {d["business_key"] for d in read_defects(world.paths) if d["kind"] == "orphan_payment"}
    landed = erp_warehouse(wh, "payments")
    assert orphans <= set(landed["payment_id"])
    landed = landed[~landed["payment_id"].isin(orphans)].reset_index(drop=True)
    pd.testing.assert_frame_equal(landed, erp_source(world.paths.erp_url, "payments"), obj="erp payments")


def nightly_runs_make_warehouse_equal_to_sources(world) -> None:
    """Every night of the world through sync_and_gate: drifted exports rejected whole, then loaded once
    re-exported; the warehouse equals the sources; every asset run left its facts."""
    settings = load_settings()
    outcomes = {day: run_job(settings, "sync_and_gate", day) for day in world.days()}
    drift = set(world.drift_dates())
    # drifted exports are rejected whole with the reason; every other night succeeds
    for day, outcome in outcomes.items():
        assert outcome.success == (day not in drift), (day, outcome.error)
    renamed, retyped = sorted(drift)
    assert "required column(s) amount missing (found new column(s) invoice_amount)" in outcomes[renamed].error
    assert "no longer holds decimals" in outcomes[retyped].error
    wh = _wh()
    rejected = wh.query_df("SELECT export_date, reason FROM ops.export_loads WHERE status = 'rejected'")
    assert set(rejected["export_date"]) == {d.isoformat() for d in drift}
    nothing = wh.query_df("SELECT count(*) AS n FROM raw.erp_invoices WHERE _partition = :p",
                          {"p": renamed.isoformat()})
    assert nothing["n"][0] == 0  # nothing of a rejected export lands

    # once the ERP re-exports those days correctly, the same partitions load
    for day in sorted(drift):
        _fix_export(world, day)
        assert run_job(settings, "sync_and_gate", day).success
    _assert_equal_to_sources(world, wh)

    # every asset run left its facts
    facts = wh.query_df("SELECT asset, partition, status, error_class FROM ops.sync_runs")
    assert set(facts["status"]) == {"success", "failure"}
    assert set(facts.loc[facts.status == "failure", "error_class"]) == {"permanent"}
    assert facts[facts.status == "success"].groupby("asset").partition.nunique().min() == len(world.days())


def raw_snapshot(wh: Warehouse) -> pd.DataFrame:
    """Every version raw holds (load bookkeeping left out), comparable across runs."""
    frames = []
    for table in ("crm_companies", "crm_contacts", "crm_deals", "erp_customers", "erp_sales_orders",
                  "erp_invoices", "erp_payments"):
        df = wh.query_df(f"SELECT * FROM raw.{table}").drop(columns=["_run_id", "_loaded_at", "_source"])
        df = df.astype(str).sort_values(list(df.columns)).reset_index(drop=True)
        frames.append(df.assign(_table=table).melt(id_vars=["_table"]).astype(str))
    return pd.concat(frames, ignore_index=True)
