"""The ROI marts (marts.fct_quote_to_cash, roi_daily, roi_summary, fct_recon_breaks,
fct_sync_runs) built by the nightly job on a generated world whose go-live is mid-history,
checked against an independent recomputation from the staging/operational tables."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trueup.assets.reconcile.config import FX_TO_USD
from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from trueup.orchestration.runner import run_job
from trueup.sandbox.generator.world import reexport_day
from tests.recon_truth import ledger_waiting, truth
from tests.world_fixtures import SMALL_WORLD, make_world

pytestmark = pytest.mark.slow

SLA = pd.Timedelta(hours=48)


@pytest.fixture
def world(tmp_path, monkeypatch):
    w = make_world(tmp_path / "home", cfg=SMALL_WORLD)   # go-live: the middle of the history
    for k, v in w.env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("TRUEUP_PUBLISH_FROM", raising=False)
    yield w
    w.server.stop()


def _windows(wh: Warehouse, golive) -> dict:
    """The two periods of equal length: current = go-live .. the business clock, baseline = as many
    days before go-live (from the first loaded day at the earliest: raw's version log keeps it)."""
    parts = wh.query_df("SELECT min(_partition) AS lo, max(_partition) AS hi FROM (SELECT _partition FROM "
                        "raw.crm_deals UNION ALL SELECT _partition FROM raw.crm_companies UNION ALL "
                        "SELECT _partition FROM raw.crm_contacts) x")
    lo, hi = (pd.Timestamp(parts.lo[0]).date(), pd.Timestamp(parts.hi[0]).date())
    n = (hi - golive).days + 1
    return {"current": (golive, hi), "baseline": (max(lo, golive - pd.Timedelta(days=n).to_pytimedelta()),
                                                 golive - pd.Timedelta(days=1).to_pytimedelta())}


def _expected_deals(wh: Warehouse, golive, judge) -> pd.DataFrame:
    deals = wh.query_df("SELECT deal_id, amount, currency, closed_at, source_partition FROM staging.stg_crm_deals "
                        "WHERE deal_stage = 'closedwon' AND closed_at IS NOT NULL")
    as_of = pd.Timestamp(deals.source_partition.max()) + pd.Timedelta(days=1)
    orders = wh.query_df("SELECT order_number, crm_deal_id, source, created_at, order_date "
                         "FROM staging.stg_erp_sales_orders WHERE crm_deal_id IS NOT NULL")
    # Trueup's orders confirmed by the ledger that staging has not seen yet (dbt's staging ran before
    # publish in the same night)
    ledger = wh.query_df("SELECT business_key, payload FROM ops.sor_writes WHERE target_system = 'erp' "
                         "AND target_object = 'sales_orders' AND state = 'confirmed'")
    rows = [{"order_number": p["order_number"], "crm_deal_id": k, "source": "integration", "created_at": pd.NaT,
             "order_date": pd.Timestamp(p["order_date"])}
            for k, p in zip(ledger.business_key, map(json.loads, ledger.payload))
            if p["order_number"] not in set(orders.order_number)]
    orders = pd.concat([orders, pd.DataFrame(rows)], ignore_index=True)
    orders["created_at"] = pd.to_datetime(orders.created_at)
    # Trueup's orders exist from the night they belong to: 02:00 (UTC here) after the deal's close day
    # (one backfill run from the first day: every deal is within it); a clerk's from its creation
    night = pd.to_datetime(orders.order_date) + pd.Timedelta(days=1, hours=2)
    orders["ordered_at"] = orders.created_at.where(orders.source != "integration", night)
    first = orders.sort_values(["ordered_at", "order_number"]).drop_duplicates("crm_deal_id")
    df = deals.merge(first, how="left", left_on="deal_id", right_on="crm_deal_id")
    df["closed_at"] = pd.to_datetime(df.closed_at)
    df["hours"] = (df.ordered_at - df.closed_at).dt.total_seconds() / 3600
    win = _windows(wh, golive)
    day = df.closed_at.dt.date
    df["period"] = np.select([(day >= a) & (day <= b) for a, b in win.values()], list(win), "earlier")
    df["usd"] = df.amount.astype(float) * df.currency.map(FX_TO_USD)
    due = df.closed_at + SLA
    met = df.ordered_at.notna() & (df.ordered_at <= due)
    # leakage: no ERP order at all past the SLA — as judged from the sources (tests/recon_truth.py)
    missing = {k[2] for k in judge.of("break") if k[:2] == ("deals_vs_orders", "missing_in_erp")}
    pending = {k[2] for k in judge.of("pending") if k[0] == "deals_vs_orders"}
    df["leak"] = np.where(df.deal_id.isin(missing), df.usd, 0.0)
    df["pending"] = np.where(df.deal_id.isin(pending), df.usd, 0.0)
    df["sla_status"] = np.where(met, "met", np.where(due <= as_of, "breached", "pending"))
    held = wh.query_df("SELECT DISTINCT business_key FROM ops.sor_writes WHERE target_object = 'sales_orders' "
                       "AND (hold_reason IS NOT NULL OR approved_by IS NOT NULL OR state IN ('held', 'awaiting_approval'))")
    quar = wh.query_df("SELECT DISTINCT business_key FROM quality.quarantine WHERE object = 'crm_deals'")
    df["touchless"] = ((df.source == "integration") & ~df.deal_id.isin(held.business_key)
                       & ~df.deal_id.isin(quar.business_key))
    df["touches"] = ((df.source == "manual").astype(int) + df.deal_id.isin(held.business_key).astype(int)
                     + df.deal_id.isin(quar.business_key).astype(int))
    return df


def test_roi_marts_match_an_independent_recomputation(world):
    for day in world.drift_dates():
        reexport_day(world.paths, day)
    settings = load_settings()
    golive = settings.publish_from
    assert world.days()[0] < golive <= world.days()[-1]
    outcome = run_job(settings, "nightly_sync", world.days()[0], world.days()[-1])
    assert outcome.success, outcome.error
    # the nightly job runs dbt before publish/reconcile: rebuild the marts by hand (the documented
    # `python -m trueup.orchestration.dbt_shell -- build`) so they see tonight's orders and breaks
    definitions_manifest = Path(__file__).resolve().parents[2] / "dbt_project" / "target" / "manifest.json"
    before = definitions_manifest.stat().st_mtime_ns
    done = subprocess.run([sys.executable, "-m", "trueup.orchestration.dbt_shell", "--", "build", "--select",
                           "fx_rates+", "fct_sync_runs+", "fct_recon_breaks+"],
                          cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]
    # dbt's output goes to the home's dbt target, as a run's does; the manifest Dagster's
    # definitions read (other test workers load it meanwhile) is left as `make setup` wrote it
    assert (settings.home / "dbt" / "target" / "run_results.json").exists()
    assert definitions_manifest.stat().st_mtime_ns == before
    # a command that takes no --target-path runs too (dbt debug: the profile reaches the warehouse)
    debug = subprocess.run([sys.executable, "-m", "trueup.orchestration.dbt_shell", "--", "debug"],
                           cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True)
    assert debug.returncode == 0, debug.stdout[-3000:]
    wh = Warehouse(settings.warehouse_url)

    q2c = wh.query_df("SELECT * FROM marts.fct_quote_to_cash")
    summary = wh.query_df("SELECT * FROM marts.roi_summary").set_index("period")
    daily = wh.query_df("SELECT * FROM marts.roi_daily")
    judge = truth(world.paths, world.paths.erp_url, world.days()[-1], golive, [world.days()[-1]],
                  waiting=ledger_waiting(wh))
    exp = _expected_deals(wh, golive, judge)

    # one row per closed-won deal; money = converted closed-won amounts
    assert sorted(q2c.deal_id) == sorted(exp.deal_id)
    assert q2c.amount_reporting.astype(float).sum() == pytest.approx(exp.usd.sum(), abs=0.01 * len(exp))
    assert set(summary.index) == {"baseline", "current"}
    assert str(summary.loc["baseline", "golive_date"])[:10] == golive.isoformat()
    for period, (a, b) in _windows(wh, golive).items():   # the windows are shown, of equal length
        row = summary.loc[period]
        assert (str(row.period_start)[:10], str(row.period_end)[:10], int(row.days)) == (
            a.isoformat(), b.isoformat(), (b - a).days + 1)

    for period, grp in exp[exp.period != "earlier"].groupby("period"):
        row = summary.loc[period]
        h = grp.hours.dropna()
        assert row.deal_to_order_hours_p50 == pytest.approx(h.quantile(0.5), rel=1e-6)
        assert row.deal_to_order_hours_p90 == pytest.approx(h.quantile(0.9), rel=1e-6)
        with_order = grp[grp.order_number.notna()]
        assert row.touchless_rate == pytest.approx(with_order.touchless.sum() / len(with_order))
        assert float(row.revenue_leakage) == pytest.approx(grp.leak.sum(), abs=0.01 * len(grp))
        assert float(row.pending_amount) == pytest.approx(grp.pending.sum(), abs=0.01 * len(grp))
        assert float(row.manual_touches_per_100) == pytest.approx(100 * grp.touches.sum() / len(with_order))
        assert row.closed_won_deals == len(grp)

    # baseline: clerks keyed the orders, slower than the platform after go-live
    base, cur = summary.loc["baseline"], summary.loc["current"]
    assert (exp[exp.period == "baseline"].source.dropna() == "manual").all()
    assert (exp[exp.period == "current"].source == "integration").sum() > 0
    assert base.deal_to_order_hours_p50 > cur.deal_to_order_hours_p50
    assert base.touchless_rate == 0 and cur.touchless_rate > 0.5
    assert "ESTIMATE" in cur.hours_saved_basis and cur.hours_saved_estimate == pytest.approx(
        cur.touchless_orders * 12 / 60)

    # money at risk: the open real breaks' amount_at_risk, once per root cause (the largest of each
    # chain), over days and over periods; pending work and timing carry none
    breaks = wh.query_df("SELECT status, category, amount_at_risk, chain_key, break_id FROM recon.breaks")
    real = breaks[(breaks.status == "open") & (breaks.category == "break")]
    at_risk = real.assign(a=real.amount_at_risk.astype(float)).groupby(real.chain_key.fillna(real.break_id))["a"] \
        .max().sum()
    assert (breaks.loc[breaks.category != "break", "amount_at_risk"].astype(float) == 0).all()
    assert float(daily.dollars_at_risk.astype(float).sum()) == pytest.approx(at_risk, abs=0.01)
    # per period, by the business date each problem began
    fct = wh.query_df("SELECT break_date, dollars_at_risk FROM marts.fct_recon_breaks")
    for period, (a, b) in _windows(wh, golive).items():
        inside = fct[(pd.to_datetime(fct.break_date).dt.date >= a) & (pd.to_datetime(fct.break_date).dt.date <= b)]
        assert float(summary.loc[period, "dollars_at_risk"]) == pytest.approx(
            inside.dollars_at_risk.astype(float).sum(), abs=0.01)
    assert len(wh.query_df("SELECT * FROM marts.fct_recon_breaks")) == len(breaks)

    # error rate: quarantined per 1,000 gated (the latest evaluation of each contract's day batch;
    # the platform's read-back of its own writes, replays and outbound payloads are not the day's input)
    gates = wh.query_df("SELECT contract, object, direction, partition, rows_in, rows_quarantined, evaluated_at "
                        "FROM quality.gate_results WHERE batch_kind = 'day'").sort_values("evaluated_at")
    gates = gates.drop_duplicates(["contract", "object", "direction", "partition"], keep="last")
    assert float(daily.quarantined_rows.astype(float).sum()) == gates.rows_quarantined.sum()
    assert daily.rows_gated.astype(float).sum() == gates.rows_in.sum()

    # runs: first-attempt success per (asset, partition)
    runs = wh.query_df("SELECT * FROM marts.fct_sync_runs")
    facts = wh.query_df("SELECT asset, partition FROM ops.sync_runs")
    assert len(runs) == len(facts)
    assert runs.is_first_try.sum() == len(facts.drop_duplicates())

    # daily: one row per day, consistent with the facts; SLO columns present
    assert daily.day.is_unique and daily.closed_won_deals.sum() == len(exp)
    assert {"order_slo_attainment_28d", "error_budget_burn_28d", "order_slo_objective"} <= set(daily.columns)

    # order SLO over a rolling 28 days: deals closed in (day - 28, day] whose 48 h are up
    closed = exp.closed_at.dt.date
    for row in daily.itertuples():
        day = pd.Timestamp(row.day).date()
        window = exp[(closed <= day) & (closed > day - pd.Timedelta(days=28))]
        met, due = (window.sla_status == "met").sum(), window.sla_status.isin(["met", "breached"]).sum()
        assert (row.order_sla_met_28d, row.order_sla_due_28d) == (met, due), day
        if due:
            objective = float(row.order_slo_objective)   # a DECIMAL in the warehouse
            assert float(row.order_slo_attainment_28d) == pytest.approx(met / due)
            assert float(row.error_budget_burn_28d) == pytest.approx((1 - met / due) / (1 - objective))
    wh.dispose()
