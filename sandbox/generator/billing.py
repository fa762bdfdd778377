"""The ERP's billing department: invoices follow orders, payments follow invoices.

It works from the ERP's current state (so orders the platform creates are billed too) and
decides every delay and defect from a hash of (seed, document number): the same orders
give the same invoices and payments, whoever created the orders and whenever.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select, update

from trueup.connectors.erp_schema import invoices, payments, sales_orders

from .config import WorldConfig
from .history import HOUR_MS, _uniforms

PAYMENT_METHODS = np.array(["wire", "card", "ach", "check"])
SPLIT_SHARE = 0.6      # first part of a split invoice
PAYMENT_TERMS_DAYS = 30


def _digits(numbers: pd.Series, prefix_len: int) -> np.ndarray:
    return numbers.str[prefix_len:].astype("int64").to_numpy()


def _stamp(day: dt.date, u: np.ndarray) -> pd.Series:
    start = pd.Timestamp(day)
    return pd.Series(start + pd.to_timedelta(8 * HOUR_MS + (u * 10 * HOUR_MS).astype("int64"), unit="ms"))


def invoice_schedule(cfg: WorldConfig, orders: pd.DataFrame) -> pd.DataFrame:
    """Planned invoices of `orders` (one or two parts each); empty parts are never issued."""
    # all the order's digits: SO-1<deal> and its duplicate SO-2<deal> must not share an invoice
    u = _uniforms(cfg.seed + 2, _digits(orders["order_number"], 3), 5)
    order_date = pd.to_datetime(orders["order_date"]).to_numpy()
    lag = (1 + np.floor(u[:, 0] * 5)).astype(int)
    never = u[:, 1] < cfg.rate("not_invoiced")
    split = u[:, 2] < 0.15
    mismatch = u[:, 3] < cfg.rate("invoice_amount_mismatch")
    total = orders["total_amount"].astype(float).to_numpy()
    billed = np.where(mismatch, np.round(total * 1.05, 2), total)
    first = np.where(split, np.round(billed * SPLIT_SHARE, 2), billed)
    parts = []
    for part, amount, due_lag in ((1, first, lag), (2, np.round(billed - first, 2), lag + 7)):
        keep = ~never & ((part == 1) | split)
        parts.append(pd.DataFrame({
            "invoice_number": ("INV-" + orders["order_number"].str[3:] + str(part))[keep],
            "order_number": orders["order_number"][keep], "customer_number": orders["customer_number"][keep],
            "currency": orders["currency"][keep], "amount": amount[keep],
            "planned": (order_date + due_lag.astype("timedelta64[D]"))[keep],
            "mismatch": mismatch[keep], "u": u[keep, 4],
        }))
    plan = pd.concat(parts, ignore_index=True)
    plan.attrs["never"] = orders.loc[never, ["order_number", "order_date", "total_amount", "currency"]]
    return plan


def payment_schedule(cfg: WorldConfig, inv: pd.DataFrame) -> pd.DataFrame:
    u = _uniforms(cfg.seed + 3, _digits(inv["invoice_number"], 4), 5)
    issue = pd.to_datetime(inv["issue_date"]).to_numpy()
    unpaid = u[:, 0] < cfg.rate("unpaid")
    delay = (5 + np.floor(u[:, 1] * 40)).astype(int)
    instalments = u[:, 2] < 0.1
    under = u[:, 3] < cfg.rate("underpaid")
    over = u[:, 3] > 1 - cfg.rate("overpaid")
    amount = inv["amount"].astype(float).to_numpy()
    to_pay = np.round(amount * np.select([under, over], [0.9, 1.05], 1.0), 2)
    first = np.where(instalments, np.round(to_pay / 2, 2), to_pay)
    parts = []
    for part, paid, lag in ((1, first, delay), (2, np.round(to_pay - first, 2), delay + 10)):
        keep = ~unpaid & ((part == 1) | instalments)
        parts.append(pd.DataFrame({
            "payment_id": ("PAY-" + inv["invoice_number"].str[4:] + str(part))[keep],
            "invoice_number": inv["invoice_number"][keep], "currency": inv["currency"][keep],
            "amount": paid[keep], "planned": (issue + lag.astype("timedelta64[D]"))[keep],
            "method": PAYMENT_METHODS[(u[keep, 4] * 4).astype(int)],
            "kind": np.select([under, over], ["underpaid", "overpaid"], None)[keep],
            "last": ((part == 2) | ~instalments)[keep],
        }))
    plan = pd.concat(parts, ignore_index=True)
    plan.attrs["unpaid"] = inv.loc[unpaid, ["invoice_number", "due_date", "amount", "currency"]]
    return plan


def run_billing_day(cfg: WorldConfig, engine: Engine, day: dt.date) -> list[dict]:
    """Issue the invoices and record the payments that fall due on `day` (catching up on
    anything planned earlier and not yet done). Returns the defects this decided."""
    defects: list[dict] = []
    with engine.begin() as conn:
        orders = pd.read_sql(select(sales_orders.c.order_number, sales_orders.c.customer_number,
                                    sales_orders.c.order_date, sales_orders.c.currency,
                                    sales_orders.c.total_amount).where(sales_orders.c.status != "cancelled"), conn)
        existing_inv = pd.read_sql(select(invoices.c.invoice_number), conn)["invoice_number"]
        day_ts = np.datetime64(day)
        if len(orders):
            plan = invoice_schedule(cfg, orders)
            due = plan[(plan["planned"] <= day_ts) & ~plan["invoice_number"].isin(existing_inv) & (plan.amount > 0)]
            if len(due):
                created = _stamp(day, due["u"].to_numpy())
                rows = pd.DataFrame({
                    "invoice_number": due["invoice_number"].to_numpy(),
                    "order_number": due["order_number"].to_numpy(),
                    "customer_number": due["customer_number"].to_numpy(),
                    "issue_date": day, "due_date": day + dt.timedelta(days=PAYMENT_TERMS_DAYS),
                    "currency": due["currency"].to_numpy(), "amount": np.char.mod("%.2f", due["amount"].to_numpy()),
                    "status": "open", "created_at": created.to_numpy(), "updated_at": created.to_numpy(),
                })
                conn.execute(invoices.insert(), _records(rows))
                for r in due[due["mismatch"]].itertuples():
                    defects.append(_defect("invoice_amount_mismatch", "invoice", r.invoice_number, day,
                                           order_number=r.order_number))
            # reported every day; the world keeps the first sighting of each defect
            for r in plan.attrs["never"].itertuples():
                defects.append(_defect("not_invoiced", "sales_order", r.order_number, day,
                                       amount=str(r.total_amount), currency=r.currency))

        inv = pd.read_sql(select(invoices.c.invoice_number, invoices.c.issue_date, invoices.c.due_date,
                                 invoices.c.currency, invoices.c.amount, invoices.c.status), conn)
        existing_pay = pd.read_sql(select(payments.c.payment_id), conn)["payment_id"]
        if len(inv):
            pplan = payment_schedule(cfg, inv)
            due = pplan[(pplan["planned"] <= day_ts) & ~pplan["payment_id"].isin(existing_pay) & (pplan.amount > 0)]
            if len(due):
                received = _stamp(day, _uniforms(cfg.seed + 4, _digits(due["payment_id"], 4), 1)[:, 0])
                rows = pd.DataFrame({
                    "payment_id": due["payment_id"].to_numpy(), "invoice_number": due["invoice_number"].to_numpy(),
                    "amount": np.char.mod("%.2f", due["amount"].to_numpy()), "currency": due["currency"].to_numpy(),
                    "received_at": received.to_numpy(), "method": due["method"].to_numpy(),
                    "created_at": received.to_numpy(), "updated_at": received.to_numpy(),
                })
                conn.execute(payments.insert(), _records(rows))
                # listed when the last payment arrives: only then does the total show it
                for r in due[due["kind"].notna() & due["last"]].itertuples():
                    defects.append(_defect(r.kind, "invoice", r.invoice_number, day, payment_id=r.payment_id))
                _mark_paid(conn, due["invoice_number"].unique(), day)
            for r in pplan.attrs["unpaid"].itertuples():
                defects.append(_defect("unpaid", "invoice", r.invoice_number, day, due_date=str(r.due_date),
                                       amount=str(r.amount), currency=r.currency))
    return defects


def _mark_paid(conn, invoice_numbers, day: dt.date) -> None:
    """An invoice whose payments cover its amount (within a cent) is paid."""
    inv = pd.read_sql(select(invoices.c.invoice_number, invoices.c.amount)
                      .where(invoices.c.invoice_number.in_(list(invoice_numbers))), conn)
    paid = pd.read_sql(select(payments.c.invoice_number, payments.c.amount, payments.c.received_at)
                       .where(payments.c.invoice_number.in_(list(invoice_numbers))), conn)
    totals = paid.assign(amount=paid["amount"].astype(float)).groupby("invoice_number").agg(
        paid=("amount", "sum"), at=("received_at", "max"))
    inv = inv.join(totals, on="invoice_number")
    settled = inv[inv["paid"] >= inv["amount"].astype(float) - 0.005]
    for r in settled.itertuples():
        conn.execute(update(invoices).where(invoices.c.invoice_number == r.invoice_number)
                     .values(status="paid", updated_at=pd.Timestamp(r.at).to_pydatetime()))


def _records(df: pd.DataFrame) -> list[dict]:
    out = df.to_dict("records")
    for rec in out:
        for k, v in rec.items():
            if isinstance(v, (np.datetime64, pd.Timestamp)):
                rec[k] = pd.Timestamp(v).to_pydatetime()
    return out


def _defect(kind: str, obj: str, key: str, day: dt.date, **details) -> dict:
    return {"kind": kind, "object": obj, "business_key": key, "day": day.isoformat(), "details": details}
