"""The sandbox data generator: deterministic, extensible, scalable, and honest about its defects.

The defect manifest is what later tests assert against, so here every manifest entry is
checked against the sources it describes (CRM store, ERP tables, export files), and the
sources are searched for defects the manifest does not list.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import select

from trueup.connectors.erp_exports import check_export, list_exports, read_export_file
from trueup.connectors.erp_schema import customers, invoices, make_erp_engine, payments, sales_orders
from trueup.sandbox.crm.store import CrmStore
from trueup.sandbox.generator.config import DEFAULT_DEFECT_RATES, WorldConfig
from trueup.sandbox.generator.world import WorldPaths, advance_world, read_defects, read_state, seed_world

OBJECTS = ("companies", "contacts", "deals")
ERP_TABLES = (customers, sales_orders, invoices, payments)
CENT = Decimal("0.01")
MONEY_RE = re.compile(r"^-?\d+\.\d{2}$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
INVOICE_HEADER = ["invoice_number", "order_number", "customer_number", "issue_date", "due_date",
                  "currency", "amount", "status", "created_at", "updated_at"]
PAYMENT_HEADER = ["payment_id", "invoice_number", "amount", "currency", "received_at", "method",
                  "created_at", "updated_at"]
try:
    from babel.numbers import list_currencies

    ISO_CURRENCIES = frozenset(list_currencies())
except ImportError:  # pragma: no cover - babel ships with the locked environment
    ISO_CURRENCIES = frozenset({"USD", "EUR", "GBP", "CAD", "CHF", "JPY", "AUD", "SEK", "NOK", "DKK", "PLN"})

ALL_KINDS = sorted(set(DEFAULT_DEFECT_RATES) | {"schema_drift"})
# kinds observable on one CRM row: the data and the manifest must name exactly the same keys
CRM_ROW_KINDS = ("missing_amount", "negative_amount", "unknown_currency", "missing_company",
                 "malformed_email", "duplicate_contact", "orphan_contact", "deleted_contact", "deleted_deal")

# Small worlds. The "rich" world raises every rate so that each kind of defect shows up,
# and moves go-live late so that clerks key enough orders for billing defects to appear.
SMALL = WorldConfig(seed=101, scale=1.0, days=30)
RICH_RATES = {k: min(0.5, max(4 * v, 0.08)) for k, v in DEFAULT_DEFECT_RATES.items()}
# high enough that two defects fall on one row (a stray order keyed with a wrong amount, a
# customer with both a wrong name and a wrong country): each must still be listed
RICH_RATES.update(orphan_payment=0.3, unpaid=0.15, underpaid=0.15, overpaid=0.2, not_invoiced=0.1,
                  duplicate_order=0.1, amount_mismatch=0.2, currency_mismatch=0.1,
                  manual_order_after_golive=0.3, customer_name_mismatch=0.3, customer_country_mismatch=0.3)
RICH = WorldConfig(seed=3, scale=2.0, days=50, golive_date=dt.date(2026, 10, 3), defect_rates=RICH_RATES)


# ----------------------------------------------------------------------------- helpers
def world_paths(root: Path) -> WorldPaths:
    return WorldPaths(root / "sandbox", f"sqlite:///{root / 'erp.sqlite'}", root / "landing")


def read_erp(paths: WorldPaths) -> dict[str, pd.DataFrame]:
    engine = make_erp_engine(paths.erp_url)
    try:
        with engine.connect() as conn:
            return {t.name: pd.read_sql(select(t).order_by(*t.primary_key.columns), conn, coerce_float=False)
                    for t in ERP_TABLES}
    finally:
        engine.dispose()


def read_crm(paths: WorldPaths) -> dict[str, pd.DataFrame]:
    store = CrmStore(paths.crm_db)
    try:
        return {t: store.all_records(t, archived=None) for t in OBJECTS}
    finally:
        store.close()


def read_export_bytes(paths: WorldPaths) -> dict[str, bytes]:
    root = paths.landing_dir / "exports"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass
class Snapshot:
    crm: dict[str, pd.DataFrame]
    erp: dict[str, pd.DataFrame]
    exports: dict[str, bytes]
    defects: list[dict]
    state: dict


def snapshot(paths: WorldPaths) -> Snapshot:
    return Snapshot(read_crm(paths), read_erp(paths), read_export_bytes(paths), read_defects(paths),
                    read_state(paths))


def assert_same_world(a: Snapshot, b: Snapshot) -> None:
    for t in OBJECTS:
        pd.testing.assert_frame_equal(a.crm[t], b.crm[t], obj=f"CRM {t}")
    for t in a.erp:
        pd.testing.assert_frame_equal(a.erp[t], b.erp[t], obj=f"ERP {t}")
    assert sorted(a.exports) == sorted(b.exports), "different export files"
    for name in a.exports:
        assert a.exports[name] == b.exports[name], f"export file {name} differs"
    assert a.defects == b.defects
    assert a.state == b.state


def is_empty(v) -> bool:
    return v is None or (isinstance(v, float) and v != v) or v is pd.NA or v == ""


def money(v) -> Decimal:
    return Decimal(str(v))


def norm_name(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(s).lower())


def day_of(ts) -> dt.date:
    return pd.Timestamp(ts).date()


@dataclass
class World:
    """A seeded world read back from its sources, with the lookups the checks need."""

    cfg: WorldConfig
    paths: WorldPaths
    snap: Snapshot
    # per export day: ERP invoice/payment rows created or updated that day, as of that day
    expected_exports: dict[dt.date, tuple[pd.DataFrame, pd.DataFrame]] = field(default_factory=dict)

    def __post_init__(self):
        crm, erp = self.snap.crm, self.snap.erp
        self.deals = crm["deals"].set_index("id")
        self.contacts = crm["contacts"].set_index("id")
        self.companies = crm["companies"].set_index("id")
        self.orders = erp["sales_orders"].set_index("order_number")
        self.invoices = erp["invoices"].set_index("invoice_number")
        self.payments = erp["payments"].set_index("payment_id")
        self.customers = erp["customers"].set_index("customer_number")
        self.golive = dt.date.fromisoformat(self.snap.state["golive_date"])
        self.last_day = dt.date.fromisoformat(self.snap.state["through_date"])
        self.by_kind: dict[str, list[dict]] = {}
        for d in self.snap.defects:
            self.by_kind.setdefault(d["kind"], []).append(d)
        self.paid = self.payments.groupby("invoice_number")["amount"].agg(lambda s: sum(s, Decimal(0)))
        self.exports = {}
        for check in list_exports(self.paths.landing_dir):
            self.exports[check.export_date] = (check, read_export_file(check.folder / "invoices.csv"),
                                               read_export_file(check.folder / "payments.csv"))

    def keys(self, kind: str) -> set[str]:
        return {d["business_key"] for d in self.by_kind.get(kind, [])}

    def deal(self, key) -> pd.Series:
        return self.deals.loc[int(key)]

    def deal_close_date(self, key) -> dt.date:
        return dt.date.fromisoformat(self.deal(key)["closedate"][:10])

    def orders_of_deal(self, key) -> pd.DataFrame:
        key = str(key)
        o = self.orders
        mask = (o["crm_deal_id"] == key) | o.index.isin([f"SO-1{key}", f"SO-2{key}"])
        return o[mask]

    def deal_of_order(self, order_number: str) -> str:
        row = self.orders.loc[order_number]
        return row["crm_deal_id"] if not is_empty(row["crm_deal_id"]) else order_number[4:]


def build_world(root: Path, cfg: WorldConfig, step_by_day: bool = False) -> World:
    paths = world_paths(root)
    expected: dict[dt.date, tuple[pd.DataFrame, pd.DataFrame]] = {}
    if not step_by_day:
        seed_world(paths, cfg)
    else:
        seed_world(paths, cfg, days=1)
        expected[cfg.start_date] = _touched(paths, cfg.start_date)
        for d in range(1, cfg.days):
            (summary,) = advance_world(paths, 1)
            assert summary.date == cfg.start_date + dt.timedelta(days=d)
            expected[summary.date] = _touched(paths, summary.date)
    return World(cfg, paths, snapshot(paths), expected)


def _touched(paths: WorldPaths, day: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    erp = read_erp(paths)
    out = []
    for name in ("invoices", "payments"):
        df = erp[name]
        created, updated = (pd.to_datetime(df[c]).dt.date for c in ("created_at", "updated_at"))
        mask = (created == day) | (updated == day)
        out.append(df[mask].reset_index(drop=True))
    return out[0], out[1]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def small_a(tmp_path_factory) -> World:
    return build_world(tmp_path_factory.mktemp("small_a"), SMALL)


@pytest.fixture(scope="module")
def rich(tmp_path_factory) -> World:
    """The raised-rates world, grown one day at a time (seed 1 day, then advance 49 times)."""
    return build_world(tmp_path_factory.mktemp("rich"), RICH, step_by_day=True)


@pytest.fixture(scope="module", params=["small", "rich"])
def any_world(request) -> World:
    return request.getfixturevalue("small_a" if request.param == "small" else "rich")


# ----------------------------------------------------------------------------- determinism
def test_same_seed_same_world_in_another_folder(small_a, tmp_path):
    again = snapshot(build_world(tmp_path, SMALL).paths)
    assert len(small_a.snap.crm["deals"]) > 100 and len(small_a.snap.erp["sales_orders"]) > 5
    assert_same_world(small_a.snap, again)


def test_different_seed_different_world(small_a, tmp_path):
    other = build_world(tmp_path, WorldConfig(seed=SMALL.seed + 1, scale=SMALL.scale, days=SMALL.days)).snap
    a = small_a.snap
    for t in OBJECTS:
        assert not a.crm[t].equals(other.crm[t]), f"CRM {t} identical across seeds"
    for t in ("customers", "sales_orders", "invoices"):
        assert not a.erp[t].equals(other.erp[t]), f"ERP {t} identical across seeds"
    assert sorted(a.exports) == sorted(other.exports)  # same dates...
    differing = [n for n in a.exports if a.exports[n] != other.exports[n]]
    assert differing, "...but the export contents must differ"
    assert a.defects != other.defects


def test_reseeding_replaces_the_world(tmp_path):
    """`seed` over an existing world starts from nothing: the result equals a fresh seed."""
    paths = world_paths(tmp_path / "w")
    seed_world(paths, WorldConfig(seed=1, days=8))
    seed_world(paths, WorldConfig(seed=2, days=6))
    fresh = world_paths(tmp_path / "fresh")
    seed_world(fresh, WorldConfig(seed=2, days=6))
    assert_same_world(snapshot(paths), snapshot(fresh))


# ----------------------------------------------------------------------------- extension
def test_advance_one_day_equals_seeding_one_more_day(tmp_path):
    cfg = WorldConfig(seed=77, days=21)
    grown = world_paths(tmp_path / "grown")
    seed_world(grown, cfg, days=20)
    before = snapshot(grown)
    (summary,) = advance_world(grown, 1)
    assert summary.date == cfg.start_date + dt.timedelta(days=20)
    assert read_state(grown)["through_day"] == 20
    direct = world_paths(tmp_path / "direct")
    seed_world(direct, cfg)
    after = snapshot(grown)
    assert_same_world(after, snapshot(direct))
    # the past is not reshuffled: the first 20 days' exports and defects are untouched
    for name, data in before.exports.items():
        assert after.exports[name] == data, f"advancing rewrote {name}"
    assert after.defects[:len(before.defects)] == before.defects
    assert len(after.exports) == len(before.exports) + 3  # one more folder: 2 CSVs + manifest


def test_growing_day_by_day_equals_seeding_at_once(rich, tmp_path):
    """49 single-day advances produce exactly the world seeded in one go."""
    direct = build_world(tmp_path, RICH)
    assert_same_world(rich.snap, direct.snap)


def test_advance_without_a_world_says_so(tmp_path):
    from trueup.sandbox.generator.world import WorldNotSeeded

    with pytest.raises(WorldNotSeeded, match="trueup sandbox seed"):
        advance_world(world_paths(tmp_path), 1)


# ----------------------------------------------------------------------------- scale
def test_scale_multiplies_the_volume(small_a, tmp_path):
    big = build_world(tmp_path, WorldConfig(seed=SMALL.seed, scale=3.0, days=SMALL.days)).snap
    for t in OBJECTS:
        ratio = len(big.crm[t]) / len(small_a.snap.crm[t])
        assert 2.5 <= ratio <= 3.5, f"{t}: scale 3 gave {ratio:.2f}x the records of scale 1"
    ratio = len(big.erp["sales_orders"]) / len(small_a.snap.erp["sales_orders"])
    assert 2.0 <= ratio <= 4.0, f"orders: {ratio:.2f}x"


# ----------------------------------------------------------------------------- manifest
def test_manifest_is_well_formed(any_world):
    w = any_world
    seen = set()
    start = w.cfg.start_date
    for d in w.snap.defects:
        assert set(d) == {"kind", "object", "business_key", "day", "details"}, d
        assert d["kind"] in ALL_KINDS, d
        assert isinstance(d["business_key"], str) and d["business_key"], d
        assert isinstance(d["details"], dict), d
        assert start <= dt.date.fromisoformat(d["day"]) <= w.last_day, d
        assert (d["kind"], d["business_key"]) not in seen, f"listed twice: {d}"
        seen.add((d["kind"], d["business_key"]))
    assert json.loads(w.paths.defects_file.read_text())["through"] == w.last_day.isoformat()


def test_raised_rates_inject_every_kind(rich):
    counts = Counter(d["kind"] for d in rich.snap.defects)
    missing = [k for k in ALL_KINDS if counts[k] == 0]
    assert not missing, f"kinds never injected: {missing} (got {dict(counts)})"


def test_default_rates_inject_common_kinds(small_a):
    counts = Counter(d["kind"] for d in small_a.snap.defects)
    assert counts["schema_drift"] == 2
    assert sum(counts.values()) >= 10


def _check_entry(w: World, d: dict) -> str | None:
    """None when the sources show the defect `d` describes, else what is wrong."""
    kind, key, det = d["kind"], d["business_key"], d["details"]

    if d["object"] == "deal" and int(key) not in w.deals.index:
        return "deal not in the CRM"
    if kind == "missing_amount":
        r = w.deal(key)
        return None if r["dealstage"] == "closedwon" and is_empty(r["amount"]) else f"amount={r['amount']!r}"
    if kind == "negative_amount":
        r = w.deal(key)
        return None if not is_empty(r["amount"]) and money(r["amount"]) < 0 else f"amount={r['amount']!r}"
    if kind == "unknown_currency":
        c = w.deal(key)["deal_currency_code"]
        return None if c not in ISO_CURRENCIES else f"currency {c} is ISO"
    if kind == "missing_company":
        r = w.deal(key)
        return None if r["dealstage"] == "closedwon" and pd.isna(r["company_id"]) else f"company={r['company_id']}"
    if kind == "deleted_deal":
        return None if w.deal(key)["archived"] else "deal not archived"
    if kind in ("malformed_email", "duplicate_contact", "orphan_contact", "deleted_contact"):
        if int(key) not in w.contacts.index:
            return "contact not in the CRM"
        c = w.contacts.loc[int(key)]
        if kind == "malformed_email":
            return None if not EMAIL_RE.match(str(c["email"])) else f"email {c['email']} is valid"
        if kind == "orphan_contact":
            cid = c["associatedcompanyid"]
            return None if is_empty(cid) or int(cid) not in w.companies.index else f"company {cid} exists"
        if kind == "deleted_contact":
            return None if c["archived"] else "contact not archived"
        orig = w.contacts.loc[int(det["duplicate_of"])]
        if det["duplicate_of"] == key or orig["email"] != c["email"]:
            return f"email {c['email']} vs original {orig['email']}"
        if not orig["created_ms"] < c["created_ms"]:
            return "the duplicate was created before the contact it duplicates"
        return None
    if kind in ("amount_mismatch", "currency_mismatch", "manual_order_after_golive", "unlinked_manual_order"):
        on = det["order_number"]
        if on not in w.orders.index:
            return f"order {on} not in the ERP"
        o, deal = w.orders.loc[on], w.deal(key)
        if w.deal_of_order(on) != key or o["source"] != "manual":
            return f"order {on} is not a manual order for deal {key}"
        if kind == "amount_mismatch":
            return None if o["total_amount"] != money(deal["amount"]) else f"amounts agree ({o['total_amount']})"
        if kind == "currency_mismatch":
            return None if o["currency"] != deal["deal_currency_code"] else "currencies agree"
        if kind == "manual_order_after_golive":
            return None if w.deal_close_date(key) >= w.golive else f"deal closed {w.deal_close_date(key)}"
        return None if is_empty(o["crm_deal_id"]) else f"order carries crm_deal_id {o['crm_deal_id']}"
    if kind == "missing_order":
        r = w.deal(key)
        if r["dealstage"] != "closedwon" or w.deal_close_date(key) >= w.golive:
            return f"deal {r['dealstage']} closed {w.deal_close_date(key)}"
        return None if w.orders_of_deal(key).empty else f"orders exist: {list(w.orders_of_deal(key).index)}"
    if kind == "duplicate_order":
        o = w.orders_of_deal(key)
        return None if len(o) >= 2 and o["crm_deal_id"].notna().sum() <= 1 else f"orders: {list(o.index)}"
    if kind == "not_invoiced":
        if key not in w.orders.index:
            return "order not in the ERP"
        return None if not (w.invoices["order_number"] == key).any() else "order has invoices"
    if kind == "invoice_amount_mismatch":
        if key not in w.invoices.index:
            return "invoice not in the ERP"
        inv = w.invoices.loc[key]
        total = w.orders.loc[inv["order_number"]]["total_amount"]
        first = (total * Decimal("0.6")).quantize(CENT)
        fair = (total, first, total - first)
        return None if all(abs(inv["amount"] - f) > CENT for f in fair) else f"amount {inv['amount']} is fair"
    if kind in ("unpaid", "underpaid", "overpaid"):
        if key not in w.invoices.index:
            return "invoice not in the ERP"
        inv = w.invoices.loc[key]
        paid = w.paid.get(key, Decimal(0))
        ok = {"unpaid": paid == 0 and inv["status"] == "open",
              "underpaid": 0 < paid < inv["amount"] and inv["status"] == "open",
              "overpaid": paid > inv["amount"] and inv["status"] == "paid"}[kind]
        return None if ok else f"invoice {inv['amount']} {inv['status']}, paid {paid}"
    if kind == "orphan_payment":
        day = dt.date.fromisoformat(d["day"])
        check, _, pay = w.exports[day]
        rows = pay[pay["payment_id"] == key]
        if len(rows) != 1 or not check.ok:
            return "payment not in that day's (valid) export"
        inv = rows.iloc[0]["invoice_number"]
        exported_invoices = {n for _, i, _ in w.exports.values() for n in i["invoice_number"]}
        if inv in w.invoices.index or inv in exported_invoices or key in w.payments.index:
            return f"invoice {inv} exists"
        return None
    if kind == "schema_drift":
        name, day = key.split("@")
        check, inv, pay = w.exports[dt.date.fromisoformat(day)]
        if not check.ok:
            return f"export does not verify: {check.reason}"
        frame = inv if name == "invoices.csv" else pay
        return None if _drifted(frame, name) else f"{name} follows the contract"
    if kind in ("customer_name_mismatch", "customer_country_mismatch"):
        cn = det["customer_number"]
        if cn not in w.customers.index or int(key) not in w.companies.index:
            return "customer or company missing"
        cust, comp = w.customers.loc[cn], w.companies.loc[int(key)]
        if kind == "customer_name_mismatch":
            return None if norm_name(cust["name"]) != norm_name(comp["name"]) else "names agree"
        return None if cust["country"] != comp["country"] else "countries agree"
    return f"no check for kind {kind}"


def _drifted(frame: pd.DataFrame, name: str) -> bool:
    header = INVOICE_HEADER if name == "invoices.csv" else PAYMENT_HEADER
    if list(frame.columns[:len(header)]) != header:
        return True
    return not frame["amount"].map(lambda v: bool(MONEY_RE.match(v))).all()


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_each_listed_defect_shows_in_the_sources(rich, small_a, kind):
    entries = [(w, d) for w in (rich, small_a) for d in w.by_kind.get(kind, [])]
    assert entries, f"no {kind} defect to check"
    bad = [(d["business_key"], problem) for w, d in entries if (problem := _check_entry(w, d))]
    assert not bad, f"{len(bad)} of {len(entries)} {kind} entries do not show in the data: {bad[:5]}"


# -- the converse: the sources hold no defects the manifest does not list
def _crm_row_defects(w: World) -> dict[str, set[str]]:
    deals, contacts = w.deals, w.contacts
    won = deals["dealstage"] == "closedwon"
    empty = deals["amount"].map(is_empty)
    amount = deals["amount"].map(lambda v: None if is_empty(v) else money(v))
    first_seen = contacts.sort_values(["created_ms"]).drop_duplicates("email").index
    return {
        "missing_amount": won & empty,
        "negative_amount": amount.map(lambda a: a is not None and a < 0),
        "unknown_currency": ~deals["deal_currency_code"].isin(ISO_CURRENCIES),
        "missing_company": won & deals["company_id"].isna(),
        "deleted_deal": deals["archived"],
        "malformed_email": ~contacts["email"].map(lambda e: bool(EMAIL_RE.match(str(e)))),
        "duplicate_contact": contacts["email"].duplicated(keep=False) & ~contacts.index.isin(first_seen),
        "orphan_contact": ~contacts["associatedcompanyid"].astype("int64").isin(w.companies.index),
        "deleted_contact": contacts["archived"],
    }


@pytest.mark.parametrize("kind", CRM_ROW_KINDS)
def test_crm_rows_with_a_defect_are_exactly_the_listed_ones(any_world, kind):
    mask = _crm_row_defects(any_world)[kind]
    in_data = {str(i) for i in mask[mask].index}
    listed = any_world.keys(kind)
    assert in_data == listed, (f"{kind}: in the data but not listed {sorted(in_data - listed)[:5]}, "
                               f"listed but not in the data {sorted(listed - in_data)[:5]}")


def test_no_unlisted_order_defects(any_world):
    w = any_world
    o = w.orders.copy()
    o["deal"] = [w.deal_of_order(n) for n in o.index]
    deal = w.deals.loc[o["deal"].astype("int64")]
    deal_amount = [money(a) for a in deal["amount"]]
    closed = [dt.date.fromisoformat(c[:10]) for c in deal["closedate"]]
    assert (deal["dealstage"] == "closedwon").all(), "an order for a deal that is not closed-won"
    found = {
        "amount_mismatch": {d for d, a, b in zip(o["deal"], o["total_amount"], deal_amount) if a != b},
        "currency_mismatch": set(o["deal"][o["currency"].to_numpy() != deal["deal_currency_code"].to_numpy()]),
        "manual_order_after_golive": {d for d, c, s in zip(o["deal"], closed, o["source"])
                                      if c >= w.golive and s == "manual"},
        "unlinked_manual_order": set(o["deal"][o["crm_deal_id"].isna() & o.index.str.startswith("SO-1")]),
        "duplicate_order": set(o["deal"][o["deal"].duplicated()]),
    }
    for kind, in_data in found.items():
        listed = w.keys(kind)
        assert in_data == listed, (f"{kind}: in the data but not listed {sorted(in_data - listed)[:5]}, "
                                   f"listed but not in the data {sorted(listed - in_data)[:5]}")


def test_no_unlisted_missing_orders(any_world):
    """A valid closed-won deal closed before go-live, more than the clerks' 5-day maximum delay
    before the world's end, without any ERP order, is listed as missing_order."""
    w = any_world
    crm_defective = set().union(*(w.keys(k) for k in CRM_ROW_KINDS))
    deals = w.deals[(w.deals["dealstage"] == "closedwon")]
    keyed = set(w.orders["crm_deal_id"].dropna()) | {n[4:] for n in w.orders.index}
    unlisted = []
    for i, r in deals.iterrows():
        key, closed = str(i), dt.date.fromisoformat(r["closedate"][:10])
        if key in crm_defective or closed >= w.golive or closed > w.last_day - dt.timedelta(days=6):
            continue
        if key not in keyed and key not in w.keys("missing_order"):
            unlisted.append(key)
    assert not unlisted


def test_no_unlisted_billing_defects(any_world):
    w = any_world
    inv, orders = w.invoices, w.orders
    old = orders[orders["order_date"].map(lambda d: d <= w.last_day - dt.timedelta(days=5))]
    uninvoiced = set(old.index[~old.index.isin(inv["order_number"])])
    assert uninvoiced <= w.keys("not_invoiced")
    assert w.keys("not_invoiced") <= set(orders.index[~orders.index.isin(inv["order_number"])])

    bad_amount = set()
    for n, r in inv.iterrows():
        total = orders.loc[r["order_number"], "total_amount"]
        first = (total * Decimal("0.6")).quantize(CENT)
        if all(abs(r["amount"] - f) > CENT for f in (total, first, total - first)):
            bad_amount.add(n)
    assert bad_amount == w.keys("invoice_amount_mismatch")

    over = {n for n, r in inv.iterrows() if w.paid.get(n, Decimal(0)) > r["amount"]}
    assert over == w.keys("overpaid")
    assert w.keys("unpaid") <= set(inv.index[~inv.index.isin(w.payments["invoice_number"])])
    # a settled invoice is one paid in full; an invoice paid in full is not open
    for n, r in inv.iterrows():
        assert (r["status"] == "paid") == (w.paid.get(n, Decimal(0)) >= r["amount"]), n


def test_no_unlisted_customer_mismatches(any_world):
    w = any_world
    # a customer's company is the company of the deals its orders came from (one per customer)
    o = w.orders
    deal_company = w.deals.loc[[int(w.deal_of_order(n)) for n in o.index], "company_id"].to_numpy()
    per_customer = pd.Series(deal_company, index=o["customer_number"].to_numpy()).groupby(level=0).unique()
    assert per_customer.map(len).eq(1).all(), "a customer's orders span several CRM companies"
    cu = w.customers.loc[per_customer.index]
    company = [int(v[0]) for v in per_customer]
    assert len(cu) == len(w.customers), "a customer without orders"
    comp = w.companies.loc[company]
    names = {str(c) for c, a, b in zip(company, cu["name"], comp["name"]) if norm_name(a) != norm_name(b)}
    countries = {str(c) for c, a, b in zip(company, cu["country"], comp["country"]) if a != b}
    assert names == w.keys("customer_name_mismatch")
    assert countries == w.keys("customer_country_mismatch")


def test_no_unlisted_export_defects(any_world):
    w = any_world
    exported_invoices = {n for _, i, _ in w.exports.values() for n in i["invoice_number"]}
    orphans, drift = set(), set()
    for day, (check, inv, pay) in w.exports.items():
        for name, frame in (("invoices.csv", inv), ("payments.csv", pay)):
            if _drifted(frame, name):
                drift.add(f"{name}@{day}")
        if "invoice_number" in pay:
            ghosts = ~pay["invoice_number"].isin(w.invoices.index) & ~pay["invoice_number"].isin(exported_invoices)
            orphans |= set(pay.loc[ghosts, "payment_id"])
    assert orphans == w.keys("orphan_payment")
    assert drift == w.keys("schema_drift")


# ----------------------------------------------------------------------------- exports
def _as_export_text(df: pd.DataFrame) -> pd.DataFrame:
    out = {}
    for c in df.columns:
        s = df[c]
        if c == "amount":
            out[c] = [format(v.quantize(CENT), "f") for v in s]
        elif c in ("issue_date", "due_date"):
            out[c] = [v.isoformat() for v in s]
        elif c.endswith("_at"):
            out[c] = [pd.Timestamp(v).strftime("%Y-%m-%dT%H:%M:%S.%fZ") for v in s]
        else:
            out[c] = [str(v) for v in s]
    return pd.DataFrame(out, columns=list(df.columns))


def test_every_day_has_a_verified_export_of_that_days_rows(rich):
    w = rich
    days = [w.cfg.start_date + dt.timedelta(days=i) for i in range(w.cfg.days)]
    assert sorted(w.exports) == days
    drift = {dt.date.fromisoformat(k.split("@")[1]): k.split("@")[0] for k in w.keys("schema_drift")}
    orphans = w.keys("orphan_payment")
    n_rows = 0
    for day in days:
        check, inv, pay = w.exports[day]
        assert check.ok, f"{day}: {check.reason}"
        assert check.manifest["export_date"] == day.isoformat()
        exp_inv, exp_pay = (_as_export_text(f) for f in w.expected_exports[day])
        # undo the listed drift (renamed amount column, or amounts with a decimal comma)
        if drift.get(day) == "invoices.csv":
            inv = inv.rename(columns={"invoice_amount": "amount"})[INVOICE_HEADER]
            inv = inv.assign(amount=inv["amount"].str.replace(",", ".", regex=False))
        if drift.get(day) == "payments.csv":
            pay = pay.rename(columns={"payment_amount": "amount"})[PAYMENT_HEADER]
            pay = pay.assign(amount=pay["amount"].str.replace(",", ".", regex=False))
        pay = pay[~pay["payment_id"].isin(orphans)].reset_index(drop=True)
        for name, got, want in (("invoices.csv", inv, exp_inv), ("payments.csv", pay, exp_pay)):
            assert list(got.columns) == list(want.columns), f"{name} of {day}: header"
            assert got.astype(object).values.tolist() == want.astype(object).values.tolist(), f"{name} of {day}"
        n_rows += len(inv) + len(pay)
    assert n_rows > 50
    # every ERP invoice and payment was exported at least once
    exported_inv = {n for _, i, _ in w.exports.values() for n in i["invoice_number"]}
    exported_pay = {n for _, _, p in w.exports.values() for n in p["payment_id"]}
    assert set(w.invoices.index) <= exported_inv
    assert set(w.payments.index) <= exported_pay


def test_schema_drift_is_listed_only_where_the_files_show_it(tmp_path):
    """A short, quiet world: its drift days may have no payments to mangle."""
    w = build_world(tmp_path, WorldConfig(seed=5, scale=0.5, days=10))
    drift = {f"{name}@{day}" for day, (_, inv, pay) in w.exports.items()
             for name, frame in (("invoices.csv", inv), ("payments.csv", pay)) if _drifted(frame, name)}
    assert drift == w.keys("schema_drift")
    assert "invoices.csv@2026-09-08" in drift  # a renamed column shows even in an empty file


def test_small_world_exports_all_verify(small_a):
    checks = list_exports(small_a.paths.landing_dir)
    assert len(checks) == SMALL.days
    assert all(c.ok for c in checks), [(c.folder.name, c.reason) for c in checks if not c.ok]
    assert all(check_export(c.folder).ok for c in checks)


# ----------------------------------------------------------------------------- ERP invariants
def test_erp_referential_integrity(any_world):
    w = any_world
    o, inv, pay, cu = w.orders, w.invoices, w.payments, w.customers
    assert o["customer_number"].isin(cu.index).all()
    linked = o["crm_deal_id"].dropna()
    assert not linked.duplicated().any(), "two orders carry the same crm_deal_id"
    assert linked.astype("int64").isin(w.deals.index).all()
    assert inv["order_number"].isin(o.index).all()
    assert (inv["customer_number"].to_numpy() == o.loc[inv["order_number"], "customer_number"].to_numpy()).all()
    assert (inv["currency"].to_numpy() == o.loc[inv["order_number"], "currency"].to_numpy()).all()
    assert pay["invoice_number"].isin(inv.index).all()
    assert (pay["currency"].to_numpy() == inv.loc[pay["invoice_number"], "currency"].to_numpy()).all()
    assert cu["crm_company_id"].dropna().astype("int64").isin(w.companies.index).all()
    assert not cu["crm_company_id"].dropna().duplicated().any()
    assert set(o["status"]) <= {"open", "fulfilled", "cancelled"}
    assert set(o["source"]) <= {"manual", "integration"}
    assert set(inv["status"]) <= {"open", "paid", "void"}
    # the clerks' write-back of the customer number into the CRM points at a real, linked customer
    wb = w.companies["erp_customer_number"].dropna()
    assert wb.isin(cu.index).all()
    assert (cu.loc[wb.to_numpy(), "crm_company_id"].to_numpy() == wb.index.astype(str).to_numpy()).all()


def test_erp_money_is_exact_two_place_decimal(any_world):
    w = any_world
    for table, col in (("customers", "credit_limit"), ("sales_orders", "total_amount"),
                       ("invoices", "amount"), ("payments", "amount")):
        values = w.snap.erp[table][col].dropna()
        assert len(values) or table == "payments"
        for v in values:
            assert isinstance(v, Decimal) and v.as_tuple().exponent == -2, (table, col, v)
        assert (values >= 0).all()
    # and the SQLite file itself stores exact decimal text, not floats
    db = sqlite3.connect(w.paths.erp_url.removeprefix("sqlite:///"))
    try:
        for table, col in (("sales_orders", "total_amount"), ("invoices", "amount"), ("payments", "amount")):
            for (v,) in db.execute(f"SELECT {col} FROM {table}"):
                assert isinstance(v, str) and MONEY_RE.match(v), (table, v)
    finally:
        db.close()


# ----------------------------------------------------------------------------- billing
def test_billing_issues_exactly_what_its_plan_says_is_due(tmp_path):
    """Every invoice and payment the plan (recomputed here from the whole book) puts on or before
    the world's last day exists, and nothing else: the billing run reads only documents whose plan
    can still fall due, and must not lose or repeat any. Includes an order posted late the way
    Trueup posts one (order date weeks before its creation): billed at once, and only once."""
    from trueup.sandbox.generator.billing import invoice_schedule, payment_schedule

    cfg = WorldConfig(seed=9, scale=0.6, days=70, golive_date=dt.date(2026, 11, 9), billing_parts=4, split_rate=0.5,
                      instalment_rate=0.5, schema_drift_days=())
    paths = world_paths(tmp_path)
    seed_world(paths, cfg, days=40)
    engine = make_erp_engine(paths.erp_url)
    posted_at = dt.datetime.combine(cfg.start_date + dt.timedelta(days=40), dt.time(2))
    with engine.begin() as conn:
        customer = conn.execute(select(customers.c.customer_number).limit(1)).scalar_one()
        conn.execute(sales_orders.insert().values(
            order_number="SO-1990000001", customer_number=customer, crm_deal_id="990000001",
            order_date=(posted_at - dt.timedelta(days=20)).date(), currency="EUR", total_amount="1234.50",
            status="open", source="integration", created_at=posted_at, updated_at=posted_at))
    engine.dispose()
    advance_world(paths, cfg.days - 40)
    erp = read_erp(paths)
    last = pd.Timestamp(cfg.start_date + dt.timedelta(days=cfg.days - 1))

    orders = erp["sales_orders"][erp["sales_orders"]["status"] != "cancelled"]
    plan = invoice_schedule(cfg, orders.assign(total_amount=orders["total_amount"].astype(str)))
    due = plan[(pd.to_datetime(plan["planned"]) <= last) & (plan["amount"] > 0)]
    assert sorted(erp["invoices"]["invoice_number"]) == sorted(due["invoice_number"])
    assert (erp["invoices"]["order_number"] == "SO-1990000001").sum() >= 1
    pplan = payment_schedule(cfg, erp["invoices"].assign(amount=erp["invoices"]["amount"].astype(str)))
    pdue = pplan[(pd.to_datetime(pplan["planned"]) <= last) & (pplan["amount"] > 0)]
    assert sorted(erp["payments"]["payment_id"]) == sorted(pdue["payment_id"])
    # the knobs at work: orders in more than two parts, invoices paid in more than two instalments
    assert erp["invoices"].groupby("order_number").size().max() > 2
    assert erp["payments"].groupby("invoice_number").size().max() > 2
