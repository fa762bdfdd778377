"""The ROI figures recomputed from what happened — the sandbox CRM store, the ERP database, the
write ledger (ops.sor_writes: what Trueup wrote, and the business-clock night each write belongs
to), the generator's defect manifest and the reconciliation judge (tests/recon_truth.py, itself
built from the sources) — never from the tables the marts read (staging, gate results, run facts,
recon.breaks).

Definitions are docs/metrics.md's, stated again here in pandas:
- periods: `current` = go-live .. the business clock (the last business day lived), `baseline` =
  as many days just before go-live (from the first day lived at the earliest);
- a deal's order: an ERP order linked to it (crm_deal_id), not cancelled; it exists from its ERP
  creation (a clerk's) or from the ledger's business_at (Trueup's);
- leakage, pending work and money at risk: the judge's findings.
"""
from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import sqlalchemy as sa

from trueup.assets.fx import FX_TO_USD
from trueup.sandbox.crm.store import CrmStore
from trueup.sandbox.generator.world import read_defects
from tests.recon_truth import INVALID_DEAL_KINDS, Truth, _counted

ORDER_SLA = pd.Timedelta(hours=48)        # dbt var order_sla_hours
MINUTES_PER_MANUAL_ORDER = 12             # dbt var minutes_per_manual_order
SLO_OBJECTIVE = 0.99                      # dbt var order_slo_objective


def windows(first_day: dt.date, as_of: dt.date, golive: dt.date) -> dict[str, tuple[dt.date, dt.date]]:
    n = (as_of - golive).days + 1
    return {"baseline": (max(first_day, golive - dt.timedelta(days=n)), golive - dt.timedelta(days=1)),
            "current": (golive, as_of)}


def deal_frame(paths, erp_url: str, ledger: pd.DataFrame, judge: Truth, as_of: dt.date,
               win: dict) -> pd.DataFrame:
    """One row per valid closed-won deal, from the CRM store, the ERP database and the ledger."""
    store = CrmStore(paths.crm_db)
    try:
        deals = store.all_records("deals", archived=False)
    finally:
        store.close()
    invalid = {d["business_key"] for d in read_defects(paths) if d["kind"] in INVALID_DEAL_KINDS}
    deals = deals.assign(id=deals["id"].astype(str))
    won = deals[(deals["dealstage"] == "closedwon") & deals["closedate"].notna() & ~deals["id"].isin(invalid)].copy()
    won["closed_at"] = pd.to_datetime(won["closedate"], utc=True).dt.tz_localize(None)
    won["usd"] = [round(float(a) * FX_TO_USD[c], 2) for a, c in zip(won["amount"], won["deal_currency_code"])]

    engine = sa.create_engine(erp_url)
    try:
        with engine.connect() as c:
            orders = pd.read_sql("SELECT order_number, crm_deal_id, source, status, created_at FROM sales_orders "
                                 "WHERE crm_deal_id IS NOT NULL", c)
            invoices = pd.read_sql("SELECT invoice_number, order_number, amount FROM invoices", c)
            payments = pd.read_sql("SELECT invoice_number, amount, received_at, payment_id FROM payments", c)
    finally:
        engine.dispose()
    orders = orders[orders["status"].fillna("") != "cancelled"].copy()
    orders["crm_deal_id"] = orders["crm_deal_id"].astype(str)
    # Trueup's orders exist from the night the ledger says they belong to
    mine = ledger[(ledger.target_system == "erp") & (ledger.target_object == "sales_orders")
                  & (ledger.state == "confirmed")]
    night = {json.loads(p)["order_number"]: at for p, at in zip(mine["payload"], mine["business_at"])}
    orders["ordered_at"] = [pd.Timestamp(night[n]) if s == "integration" else pd.Timestamp(c)
                            for n, s, c in zip(orders["order_number"], orders["source"], orders["created_at"])]
    first = orders.sort_values(["ordered_at", "order_number"]).drop_duplicates("crm_deal_id")

    # paid: the first payment that brings the order's invoices' total in
    inv = invoices.assign(amount=invoices["amount"].astype(float))
    invoiced = inv.groupby("order_number")["amount"].sum()
    pay = payments.merge(inv[["invoice_number", "order_number"]], on="invoice_number")
    pay = pay.assign(amount=pay["amount"].astype(float), received_at=pd.to_datetime(pay["received_at"]))
    pay = pay.sort_values(["order_number", "received_at", "payment_id"])
    pay["to_date"] = pay.groupby("order_number")["amount"].cumsum()
    pay = pay[pay["to_date"] >= pay["order_number"].map(invoiced.to_dict()).astype(float) - 0.01]
    paid_at = pay.groupby("order_number")["received_at"].min()

    df = won.merge(first[["crm_deal_id", "order_number", "source", "ordered_at"]], how="left",
                   left_on="id", right_on="crm_deal_id")
    # (dicts: a world with no payment yet maps to all-missing, not a dtype error)
    df["paid_at"] = pd.to_datetime(df["order_number"].map(paid_at.to_dict()))
    df["hours"] = (df["ordered_at"] - df["closed_at"]).dt.total_seconds() / 3600
    df["q2c_days"] = (df["paid_at"] - df["closed_at"]).dt.total_seconds() / 86400
    df["day"] = df["closed_at"].dt.date
    df["period"] = np.select([(df["day"] >= a) & (df["day"] <= b) for a, b in win.values()], list(win), "earlier")
    as_of_at = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    due = df["closed_at"] + ORDER_SLA
    met = df["ordered_at"].notna() & (df["ordered_at"] <= due)
    df["sla"] = np.where(met, "met", np.where(due <= as_of_at, "breached", "pending"))
    df["followed_30d"] = as_of_at >= df["closed_at"] + pd.Timedelta(days=30)
    df["paid_30d"] = df["paid_at"].notna() & (df["paid_at"] <= df["closed_at"] + pd.Timedelta(days=30))
    df["followed_60d"] = as_of_at >= df["closed_at"] + pd.Timedelta(days=60)
    df["paid_60d"] = df["paid_at"].notna() & (df["paid_at"] <= df["closed_at"] + pd.Timedelta(days=60))
    # leakage and pending work: the judge's
    missing = {k[2] for k in judge.of("break") if k[:2] == ("deals_vs_orders", "missing_in_erp")}
    pending = {k[2] for k in judge.of("pending") if k[0] == "deals_vs_orders"}
    df["leak"] = np.where(df["id"].isin(missing), df["usd"], 0.0)
    df["pending"] = np.where(df["id"].isin(pending), df["usd"], 0.0)
    # manual steps: a clerk's order, a write held or approved by a person, a quarantined deal
    orders_led = ledger[ledger.target_object == "sales_orders"]
    stepped = set(orders_led.loc[orders_led.hold_reason.notna() | orders_led.approved_by.notna()
                                 | orders_led.state.isin(["held", "awaiting_approval"]), "business_key"])
    df["has_order"] = df["order_number"].notna()
    df["touchless"] = df["has_order"] & (df["source"] == "integration") & ~df["id"].isin(stepped | invalid)
    df["touches"] = ((df["source"] == "manual").astype(int) + df["id"].isin(stepped).astype(int)
                     + df["id"].isin(invalid).astype(int))
    return df


def _q(s: pd.Series, f: float):
    s = s.dropna()
    return float(s.quantile(f)) if len(s) else None


def _div(a, b):
    return a / b if b else None


def deal_measures(g: pd.DataFrame) -> dict:
    """The deal-level measures of a group of deals (a period or a day)."""
    orders = int(g["has_order"].sum())
    touchless = int(g["touchless"].sum())
    met, due = int((g["sla"] == "met").sum()), int(g["sla"].isin(["met", "breached"]).sum())
    amount, leak = float(g["usd"].sum()), float(g["leak"].sum())
    return {
        "closed_won_deals": len(g), "orders": orders, "touchless_orders": touchless,
        "manual_orders": int((g["source"] == "manual").sum()),
        "deal_to_order_hours_p50": _q(g["hours"], 0.5), "deal_to_order_hours_p90": _q(g["hours"], 0.9),
        "touchless_rate": _div(touchless, orders),
        "closed_won_amount": amount, "revenue_leakage": leak, "revenue_leakage_share": _div(leak, amount),
        "leaked_deals": int((g["leak"] > 0).sum()), "pending_deals": int((g["pending"] > 0).sum()),
        "pending_amount": float(g["pending"].sum()),
        "manual_touches": int(g["touches"].sum()),
        "manual_touches_per_100": None if not orders else 100 * g["touches"].sum() / orders,
        "hours_saved_estimate": touchless * MINUTES_PER_MANUAL_ORDER / 60,
        "order_sla_met": met, "order_sla_due": due, "order_slo_attainment": _div(met, due),
        "error_budget_burn": None if not due else (1 - met / due) / (1 - SLO_OBJECTIVE),
    }


def cohort_measures(g: pd.DataFrame) -> dict:
    """Censoring-aware cash measures: paid within 30 days over deals followed 30 days; the median
    days to cash over deals followed 60 days (an unpaid one counting as longer)."""
    f30 = g[g["followed_30d"]]
    f60 = g[g["followed_60d"]]
    median = None
    if len(f60):
        m = float(np.percentile(np.where(f60["paid_60d"], f60["q2c_days"], 1e9), 50))
        median = m if m < 1e8 else None
    return {"paid_within_30d_cohort": len(f30), "paid_within_30d_rate": _div(int(f30["paid_30d"].sum()), len(f30)),
            "quote_to_cash_cohort_60d": len(f60), "quote_to_cash_days_p50": median}


def recovered_by_date(snapshots: list[Truth], final: Truth) -> dict[dt.date, float]:
    """Money recovered: the real breaks the judge saw open at the end of an earlier run and that
    are no longer open — at the amount last seen, once per root cause, by the date the problem
    began."""
    last: dict = {}
    for t in snapshots:
        for k, f in t.of("break").items():
            last[k] = f
    gone = {k: f for k, f in last.items() if k not in final.of("break")}
    money = _counted({k: (f.money_usd, f.chain) for k, f in gone.items()})
    out: dict[dt.date, float] = {}
    for k, m in money.items():
        if m:
            out[gone[k].date] = out.get(gone[k].date, 0.0) + m
    return out
