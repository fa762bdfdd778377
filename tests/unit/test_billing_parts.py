"""The ERP billing simulator's parts: invoices in parts over a week, payments in instalments over
ten days. Whatever the knobs, the parts of a document sum to it, each document keeps its own
plan (decided by its number, not by the batch it is planned in), and the default knobs bill as
worlds always have (one part, or two: 60 % then the rest a week later)."""
from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from trueup.sandbox.generator.billing import invoice_schedule, payment_schedule
from trueup.sandbox.generator.config import WorldConfig

NO_DEFECTS = {"not_invoiced": 0.0, "invoice_amount_mismatch": 0.0, "unpaid": 0.0, "underpaid": 0.0, "overpaid": 0.0}
ORDER_DATE = dt.date(2026, 9, 10)


def orders(n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    deals = 10_000_000 + np.arange(n)
    return pd.DataFrame({
        "order_number": [f"SO-1{d}" for d in deals], "customer_number": "C-1",
        "order_date": ORDER_DATE, "currency": "EUR",
        "total_amount": np.char.mod("%.2f", np.round(rng.uniform(0.05, 90_000, n), 2)),
    })


def issued(plan: pd.DataFrame) -> pd.DataFrame:
    """The invoices as the billing run issues them (dated when planned)."""
    return pd.DataFrame({"invoice_number": plan["invoice_number"], "issue_date": plan["planned"],
                         "due_date": plan["planned"], "currency": plan["currency"],
                         "amount": np.char.mod("%.2f", plan["amount"].to_numpy())})


def cents(values: pd.Series) -> pd.Series:
    """Exact cents of each amount (through its decimal text, as the ERP stores it)."""
    return values.map(lambda v: int((Decimal(f"{float(v):.2f}") * 100).to_integral_value()))


@pytest.mark.parametrize("parts,split,instalments", [(2, 0.15, 0.1), (6, 1.0, 1.0), (9, 0.5, 0.7), (3, 1.0, 0.0)])
def test_parts_sum_to_the_document_and_fall_in_their_window(parts, split, instalments):
    cfg = WorldConfig(seed=11, billing_parts=parts, split_rate=split, instalment_rate=instalments,
                      defect_rates=NO_DEFECTS)
    book = orders()
    inv = invoice_schedule(cfg, book)
    assert inv["invoice_number"].is_unique
    per_order = inv.groupby("order_number")
    assert set(per_order.size()) <= set(range(1, parts + 1))
    if split == 1.0:
        assert per_order.size().min() >= 2
    # every order billed exactly its total, to the cent
    billed = cents(inv["amount"]).groupby(inv["order_number"]).sum()
    pd.testing.assert_series_equal(billed, cents(book.set_index("order_number")["total_amount"]).loc[billed.index],
                                   check_names=False)
    # the first part 1..5 days after the order, the last at most a week after the first
    lag = (pd.to_datetime(inv["planned"]) - pd.Timestamp(ORDER_DATE)).dt.days
    assert lag.min() >= 1 and lag.max() <= 5 + 7

    pay = payment_schedule(cfg, issued(inv))
    assert pay["payment_id"].is_unique
    per_invoice = pay.groupby("invoice_number")
    assert set(per_invoice.size()) <= set(range(1, parts + 1))
    paid = cents(pay["amount"]).groupby(pay["invoice_number"]).sum()
    pd.testing.assert_series_equal(paid, cents(inv.set_index("invoice_number")["amount"]).loc[paid.index],
                                   check_names=False)
    assert (per_invoice["last"].sum() == 1).all()
    planned = pd.to_datetime(pay["planned"]).groupby(pay["invoice_number"])
    assert (planned.max() - planned.min()).dt.days.max() <= 10


def test_default_knobs_bill_as_before():
    """One part, or two: 60 % of the total first, the rest seven days later; half a payment each."""
    cfg = WorldConfig(seed=11, defect_rates=NO_DEFECTS)
    book = orders()
    inv = invoice_schedule(cfg, book)
    sizes = inv.groupby("order_number").size()
    assert set(sizes) == {1, 2}
    assert 0.12 < (sizes == 2).mean() < 0.18          # split_rate 0.15
    totals = dict(zip(book["order_number"], book["total_amount"].astype(float)))
    two = inv[inv["order_number"].isin(sizes[sizes == 2].index)].sort_values("invoice_number")
    first, second = two.iloc[::2], two.iloc[1::2]
    expected_first = [round(totals[o] * 0.6, 2) for o in first["order_number"]]
    assert first["amount"].tolist() == expected_first
    assert ((pd.to_datetime(second["planned"].to_numpy()) - pd.to_datetime(first["planned"].to_numpy())).days
            == 7).all()
    pay = payment_schedule(cfg, issued(inv))
    psizes = pay.groupby("invoice_number").size()
    assert set(psizes) == {1, 2} and 0.07 < (psizes == 2).mean() < 0.13   # instalment_rate 0.1


def test_a_document_keeps_its_plan_whatever_else_is_planned_with_it():
    """The billing run plans from the ERP's whole state every day: an order's invoices must not
    change because other orders joined the book."""
    cfg = WorldConfig(seed=11, billing_parts=7, split_rate=0.8, instalment_rate=0.6)
    book = orders()
    whole = invoice_schedule(cfg, book).set_index("invoice_number").sort_index()
    part = invoice_schedule(cfg, book.iloc[::3].reset_index(drop=True)).set_index("invoice_number").sort_index()
    pd.testing.assert_frame_equal(part, whole.loc[part.index])


def test_knobs_outside_one_digit_are_refused_and_survive_the_world_file():
    with pytest.raises(ValueError, match="billing_parts must be 2..9"):
        WorldConfig(billing_parts=10)
    cfg = WorldConfig(billing_parts=5, split_rate=0.9, instalment_rate=0.4)
    back = WorldConfig.from_json(json.loads(json.dumps(cfg.to_json())))
    assert (back.billing_parts, back.split_rate, back.instalment_rate) == (5, 0.9, 0.4)
    old = cfg.to_json()
    for k in ("billing_parts", "split_rate", "instalment_rate"):
        old.pop(k)   # a world.json written before the knobs existed
    assert WorldConfig.from_json(old).billing_parts == 2
