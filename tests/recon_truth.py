"""What reconciliation should report, judged from the sources and the generator's defect manifest
alone — never from a table the platform derived.

`truth(...)` reads the sandbox CRM store, the ERP database and the manifest, as of the world's
last business day, and lists the findings a careful person would expect:
- real breaks (category `break`), each with its money at risk in USD and its root-cause chain;
- pending work (`pending`): deals whose order Trueup must hold for a person — above the approval
  threshold, or a clerk keyed the order by hand before Trueup's night posted it;
- timing (`timing`): true problems that are not due yet (an order within its SLA, an invoice
  before its due date).
Identity is the generator's own: the clerk's customer C1<company> is company <company>, Trueup's
C8<company> likewise; the clerk's orders SO-1<deal> (and their twin SO-2<deal>) belong to
<deal>, Trueup's SO-8<deal> too. `score(...)` compares with recon.breaks: precision and recall of
open breaks by count and by money (money counted once per root cause, as the platform must).
"""
from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from trueup.assets.fx import FX_TO_USD
from trueup.sandbox.crm.store import CrmStore
from trueup.sandbox.generator.world import read_defects

#: deals the inbound gate quarantines (contract failures): never reconciled, a quarantine entry
INVALID_DEAL_KINDS = {"missing_amount", "negative_amount", "unknown_currency", "missing_company"}


@dataclass(frozen=True)
class Rules:
    """The business rules, as a finance person states them (the defaults of the platform)."""
    order_sla_days: int = 2
    invoice_sla_days: int = 7
    invoice_complete_days: int = 14
    tolerance: float = 0.01
    approval_threshold_usd: float = 250_000.0


@dataclass
class Finding:
    recon: str
    kind: str
    key: str
    category: str          # break | pending | timing
    money_usd: float       # at risk (breaks) or waiting (pending, timing)
    chain: str
    why: str = ""
    date: dt.date | None = None   # the business date the problem began (dates the money at risk)


@dataclass
class Truth:
    as_of: dt.date
    findings: dict[tuple[str, str, str], Finding] = field(default_factory=dict)
    # manifest defects that are true but not yet due on as_of (listed, counted neither way)
    not_yet_due: list[dict] = field(default_factory=list)

    def add(self, f: Finding) -> None:
        self.findings[(f.recon, f.kind, f.key)] = f

    def of(self, category: str) -> dict[tuple[str, str, str], Finding]:
        return {k: f for k, f in self.findings.items() if f.category == category}


def usd(amount: float, currency: str) -> float:
    return round(abs(float(amount)) * FX_TO_USD.get(str(currency), 1.0), 2)


def _day(value) -> dt.date | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    return pd.Timestamp(str(value)[:10]).date()


def _norm(name) -> str:
    return re.sub(r"[^a-z0-9]+", "", str(name or "").lower())


def _company_of_customer(number: str, crm_company_id) -> str | None:
    if isinstance(number, str) and number.startswith(("C1", "C8")):
        return number[2:]
    return str(crm_company_id) if isinstance(crm_company_id, str) and crm_company_id else None


def _deal_of_order(number: str, crm_deal_id) -> str | None:
    if isinstance(crm_deal_id, str) and crm_deal_id:
        return crm_deal_id
    if isinstance(number, str) and number.startswith(("SO-1", "SO-2", "SO-8")):
        return number[4:]
    return None


def truth(paths, erp_url: str, as_of: dt.date, golive: dt.date, publish_nights: list[dt.date],
          rules: Rules = Rules(), waiting: dict[str, str] | None = None) -> Truth:
    """`publish_nights`: the business days whose nightly run published (the last day of each
    run after go-live) — when Trueup posted a deal's order decides whether a clerk's stray
    order came first (held for review) or second (a duplicate). `waiting`: deal id → `held` /
    `awaiting_approval` for the order writes the ledger shows waiting for a person (the record
    of a decision, like a source: `ledger_waiting`); a deal without any order that waits is
    pending work, not a missing order."""
    waiting = waiting or {}
    t = Truth(as_of)
    defects = read_defects(paths)
    kinds: dict[str, set[str]] = {}
    for d in defects:
        kinds.setdefault(d["kind"], set()).add(d["business_key"])
    store = CrmStore(paths.crm_db)
    try:
        deals = store.all_records("deals", archived=False)
        companies = store.all_records("companies", archived=False)
    finally:
        store.close()
    engine = sa.create_engine(erp_url)
    try:
        with engine.connect() as c:
            customers = pd.read_sql("SELECT * FROM customers", c)
            orders = pd.read_sql("SELECT * FROM sales_orders", c)
            invoices = pd.read_sql("SELECT * FROM invoices", c)
            payments = pd.read_sql("SELECT * FROM payments", c)
    finally:
        engine.dispose()

    # -- deals ↔ orders ---------------------------------------------------------------------
    deals = deals.assign(id=deals["id"].astype(str))
    won = deals[(deals["dealstage"] == "closedwon") & ~deals["id"].isin(kinds.get("missing_amount", set())
                                                                          | kinds.get("negative_amount", set())
                                                                          | kinds.get("unknown_currency", set())
                                                                          | kinds.get("missing_company", set()))]
    won = won.assign(close=won["closedate"].map(_day), amount=won["amount"].astype(float))
    won = won[won["close"] <= as_of]
    orders = orders[orders["status"].fillna("") != "cancelled"].copy()
    orders["deal"] = [_deal_of_order(n, d) for n, d in zip(orders["order_number"], orders["crm_deal_id"])]
    orders["amount"] = orders["total_amount"].astype(float)
    won_ids = set(won["id"])
    nights = sorted(n for n in publish_nights if n >= golive)

    def first_night(day: dt.date) -> dt.date | None:
        return next((n for n in nights if n >= day), None)

    def exists_from(o) -> dt.date:
        if o.source == "integration":          # posted by Trueup on a night: that business day
            return first_night(_day(o.order_date)) or _day(o.order_date)
        return _day(o.created_at)

    orders["exists_from"] = [exists_from(o) for o in orders.itertuples()]
    stray = kinds.get("manual_order_after_golive", set())
    for d in won.itertuples():
        mine = orders[orders["deal"] == d.id].sort_values("exists_from")
        money = usd(d.amount, d.deal_currency_code)
        if len(mine) >= 2:
            extra = mine.iloc[1:]
            t.add(Finding("deals_vs_orders", "duplicate_order", d.id, "break",
                          round(sum(usd(a, c) for a, c in zip(extra["amount"], extra["currency"])), 2),
                          "order:" + (extra["order_number"].min() if (extra["crm_deal_id"].isna()).any()
                                      else mine["order_number"].min()), "two orders for one deal",
                          date=extra["exists_from"].min()))
            continue
        if len(mine) == 1:
            o = mine.iloc[0]
            night = first_night(d.close) if d.close >= golive else None
            if d.id in stray and o.source == "manual" and night is not None and o.exists_from <= night:
                t.add(Finding("deals_vs_orders", "held_for_review", d.id, "pending", money, "deal:" + d.id,
                              "a clerk keyed the order before Trueup's night: a person links it"))
                continue
            if o.currency != d.deal_currency_code:
                t.add(Finding("deals_vs_orders", "currency_mismatch", d.id, "break", money,
                              "order:" + o.order_number, "order in another currency", date=o.exists_from))
            elif abs(o.amount - d.amount) > rules.tolerance:
                t.add(Finding("deals_vs_orders", "amount_mismatch", d.id, "break",
                              usd(o.amount - d.amount, d.deal_currency_code), "order:" + o.order_number,
                              "order amount differs", date=o.exists_from))
            continue
        if waiting.get(d.id) == "held":
            t.add(Finding("deals_vs_orders", "held_for_review", d.id, "pending", money, "deal:" + d.id,
                          "Trueup holds its order for a person"))
        elif d.close >= golive and money > rules.approval_threshold_usd:
            t.add(Finding("deals_vs_orders", "pending_approval", d.id, "pending", money, "deal:" + d.id,
                          "above the approval threshold"))
        elif (as_of - d.close).days > rules.order_sla_days:
            t.add(Finding("deals_vs_orders", "missing_in_erp", d.id, "break", money, "deal:" + d.id,
                          "no order past the SLA", date=d.close))
        else:
            t.add(Finding("deals_vs_orders", "awaiting_order", d.id, "timing", money, "deal:" + d.id))
    for o in orders[~orders["deal"].isin(won_ids)].itertuples():
        t.add(Finding("deals_vs_orders", "missing_in_crm", o.order_number, "break", usd(o.amount, o.currency),
                      "order:" + o.order_number, "an order for no closed-won deal", date=o.exists_from))

    # -- orders ↔ invoices --------------------------------------------------------------------
    inv = invoices[~invoices["status"].fillna("").isin(["cancelled", "void"])].copy()
    inv["amount"] = inv["amount"].astype(float)
    by_order = inv.groupby("order_number")
    for o in orders.itertuples():
        age = (as_of - o.exists_from).days
        if o.order_number not in by_order.groups:
            kind, cat = ("not_invoiced", "break") if age > rules.invoice_sla_days else ("awaiting_invoice", "timing")
            t.add(Finding("orders_vs_invoices", kind, o.order_number, cat, usd(o.amount, o.currency),
                          "order:" + o.order_number, date=o.exists_from))
            continue
        mine = by_order.get_group(o.order_number)
        if (mine["currency"] != o.currency).any():
            t.add(Finding("orders_vs_invoices", "currency_mismatch", o.order_number, "break",
                          usd(mine["amount"].sum(), o.currency), "order:" + o.order_number,
                          date=min(map(_day, mine["issue_date"]))))
            continue
        diff = mine["amount"].sum() - o.amount
        if diff > rules.tolerance or (-diff > rules.tolerance and age > rules.invoice_complete_days):
            t.add(Finding("orders_vs_invoices", "invoice_amount_mismatch", o.order_number, "break",
                          usd(diff, o.currency), "order:" + o.order_number, date=max(map(_day, mine["issue_date"]))))

    # -- invoices ↔ payments ------------------------------------------------------------------
    pay = payments.assign(amount=payments["amount"].astype(float)).groupby("invoice_number")
    for i in inv.itertuples():
        due = _day(i.due_date)
        chain = "order:" + i.order_number
        if i.invoice_number not in pay.groups:
            if as_of > due:
                t.add(Finding("invoices_vs_payments", "unpaid_past_due", i.invoice_number, "break",
                              usd(i.amount, i.currency), chain, date=due))
            continue
        p = pay.get_group(i.invoice_number)
        if (p["currency"] != i.currency).any():
            t.add(Finding("invoices_vs_payments", "currency_mismatch", i.invoice_number, "break",
                          usd(p["amount"].sum(), i.currency), chain, date=max(map(_day, p["received_at"]))))
            continue
        diff = p["amount"].sum() - i.amount
        if diff > rules.tolerance:
            t.add(Finding("invoices_vs_payments", "overpaid", i.invoice_number, "break", usd(diff, i.currency), chain,
                          date=max(map(_day, p["received_at"]))))
        elif -diff > rules.tolerance:
            kind, cat = ("underpaid", "break") if as_of > due else ("partially_paid", "timing")
            t.add(Finding("invoices_vs_payments", kind, i.invoice_number, cat, usd(diff, i.currency), chain, date=due))
    for d in defects:
        # an orphan payment is one while its day's export still carries it (a re-export by the
        # ERP team, e.g. after a drifted file, rewrites the day from the ERP database without it)
        if d["kind"] == "orphan_payment" and _day(d["day"]) <= as_of and \
                d["business_key"] in _exported_payment_ids(paths, _day(d["day"])):
            t.add(Finding("invoices_vs_payments", "orphan_payment", d["business_key"], "break", usd(125.0, "USD"),
                          "payment:" + d["business_key"], date=_day(d["day"])))

    # -- companies ↔ customers ----------------------------------------------------------------
    comp = companies.assign(id=companies["id"].astype(str)).set_index("id")
    for c in customers.itertuples():
        company = _company_of_customer(c.customer_number, c.crm_company_id)
        if company is None or company not in comp.index:
            t.add(Finding("companies_vs_customers", "missing_in_crm", c.customer_number, "break", 0.0,
                          "customer:" + c.customer_number))
            continue
        k = comp.loc[company]
        if _norm(k["name"]) != _norm(c.name):
            t.add(Finding("companies_vs_customers", "name_mismatch", company, "break", 0.0, "company:" + company))
        if str(k.get("country") or "").strip().upper() != str(c.country or "").strip().upper():
            t.add(Finding("companies_vs_customers", "country_mismatch", company, "break", 0.0, "company:" + company))

    # -- what the manifest says is wrong but is not due yet ------------------------------------
    for d in defects:
        if d["kind"] == "unpaid" and _day(d["details"]["due_date"]) >= as_of:
            t.not_yet_due.append(d)
        if d["kind"] == "not_invoiced" and d["business_key"] in set(orders["order_number"]):
            o = orders.set_index("order_number").loc[d["business_key"]]
            if (as_of - o["exists_from"]).days <= rules.invoice_sla_days:
                t.not_yet_due.append(d)
    return t


def _exported_payment_ids(paths, day: dt.date) -> set[str]:
    """The payment ids of one day's ERP export file as it stands in the landing folder."""
    f = paths.landing_dir / "exports" / day.isoformat() / "payments.csv"
    return set(pd.read_csv(f, dtype=str)["payment_id"]) if f.exists() else set()


def ledger_waiting(wh) -> dict[str, str]:
    """Deal id → state of the order writes waiting for a person in the ledger (ops.sor_writes)."""
    df = wh.query_df("SELECT business_key, state FROM ops.sor_writes WHERE target_object = 'sales_orders' "
                     "AND state IN ('held', 'awaiting_approval')")
    return dict(zip(df["business_key"], df["state"]))


def manifest_agrees(t: Truth, paths) -> list[str]:
    """The defects the manifest lists, each due one of them must be among the truth's breaks (or
    its pending work): a check of this judge against the generator's own record."""
    have = {(f.kind, f.key) for f in t.findings.values()}
    keys = {f.key for f in t.findings.values() if f.category in ("break", "pending")}
    problems = []
    for d in read_defects(paths):
        k, key = d["kind"], d["business_key"]
        if k == "missing_order" and _day(d["day"]) < t.as_of - dt.timedelta(days=2) and \
                ("missing_in_erp", key) not in have:
            problems.append(f"missing_order {key} not judged missing_in_erp")
        if k == "orphan_payment" and key not in _exported_payment_ids(paths, _day(d["day"])):
            continue  # re-exported without it: no longer in any source
        if k in ("amount_mismatch", "currency_mismatch", "duplicate_order", "customer_name_mismatch",
                 "customer_country_mismatch", "overpaid", "orphan_payment") and key not in keys:
            problems.append(f"{k} {key} not among the judged breaks")
        if k == "unpaid" and d not in t.not_yet_due and key not in keys:
            problems.append(f"unpaid {key} past due and not judged unpaid")
    return problems


@dataclass
class Score:
    precision_count: float
    recall_count: float
    precision_money: float
    recall_money: float
    false: list
    missed: list
    money_differs: list
    pending_found: set
    pending_expected: set
    timing_found: set
    timing_expected: set

    def line(self) -> str:
        return (f"precision {self.precision_count:.1%} / recall {self.recall_count:.1%} by count, "
                f"{self.precision_money:.1%} / {self.recall_money:.1%} by money")


def _counted(items: dict) -> dict:
    """Money once per chain: the largest of the chain's breaks holds it."""
    holder: dict[str, tuple] = {}
    for k, (money, chain) in sorted(items.items(), key=lambda kv: (-kv[1][0], kv[0])):
        holder.setdefault(chain, k)
    return {k: (money if holder[chain] == k else 0.0) for k, (money, chain) in items.items()}


def at_risk_by_date(t: Truth) -> dict[dt.date, float]:
    """Money at risk of the open real breaks, once per root cause, by the business date the
    problem began (the chain's holder — its largest break — dates it)."""
    items = t.of("break")
    money = _counted({k: (f.money_usd, f.chain) for k, f in items.items()})
    out: dict[dt.date, float] = {}
    for k, m in money.items():
        if m:
            out[items[k].date] = out.get(items[k].date, 0.0) + m
    return out


def score(t: Truth, wh) -> Score:
    b = wh.query_df("SELECT recon_name, break_type, business_key, category, amount_at_risk, amount_pending, "
                    "chain_key FROM recon.breaks WHERE status = 'open' AND recon_name <> 'source_vs_warehouse'")
    found = {(r.recon_name, r.break_type, r.business_key): (float(r.amount_at_risk or 0), r.chain_key or "")
             for r in b.itertuples() if r.category == "break"}
    expected = {k: (f.money_usd, f.chain) for k, f in t.of("break").items()}
    got_money, exp_money = _counted(found), _counted(expected)
    hit = set(found) & set(expected)
    pc = len(hit) / len(found) if found else 1.0
    rc = len(hit) / len(expected) if expected else 1.0
    # money: the chains' money, each counted once, on both sides
    found_total = sum(got_money.values())
    exp_total = sum(exp_money.values())
    hit_found = sum(got_money[k] for k in hit)
    hit_exp = sum(exp_money[k] for k in hit)
    pm = hit_found / found_total if found_total else 1.0
    rm = hit_exp / exp_total if exp_total else 1.0
    differs = [(k, found[k][0], expected[k][0]) for k in hit if abs(found[k][0] - expected[k][0]) > 0.011]
    cat = lambda c: {(r.recon_name, r.break_type, r.business_key) for r in b.itertuples() if r.category == c}  # noqa
    return Score(pc, rc, pm, rm, sorted(set(found) - hit), sorted(set(expected) - hit), sorted(differs),
                 cat("pending"), set(t.of("pending")), cat("timing"), set(t.of("timing")))


def report(t: Truth, s: Score) -> str:
    return json.dumps({"as_of": t.as_of.isoformat(), "score": s.line(), "false": s.false[:20],
                       "missed": s.missed[:20], "money_differs": s.money_differs[:20],
                       "not_yet_due": [(d["kind"], d["business_key"]) for d in t.not_yet_due]}, indent=1, default=str)
