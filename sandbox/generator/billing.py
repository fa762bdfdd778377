"""The ERP's billing department: invoices follow orders, payments follow invoices.

It works from the ERP's current state (so orders the platform creates are billed too) and
decides every delay and defect from a hash of (seed, document number): the same orders
give the same invoices and payments, whoever created the orders and whenever.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Engine, bindparam, or_, select, update

from trueup.connectors.erp_schema import invoices, payments, sales_orders

from .config import WorldConfig
from .history import HOUR_MS, _uniforms

PAYMENT_METHODS = np.array(["wire", "card", "ach", "check"])
SPLIT_SHARE = 0.6      # first part of an invoice split in two (more parts: equal shares)
PAYMENT_TERMS_DAYS = 30
ORDER_WINDOW_DAYS = 13      # > the latest an order's last invoice is planned (5 + 7 days)
PAYMENT_WINDOW_DAYS = 56    # > the latest an invoice's last payment is planned (44 + 10 days)


def _digits(numbers: pd.Series, prefix_len: int) -> np.ndarray:
    return numbers.str[prefix_len:].astype("int64").to_numpy()


def _known(numbers: pd.Series, existing: pd.Series) -> np.ndarray:
    """numbers.isin(existing), through Arrow: pandas' isin on strings takes ~12× longer, and a
    scale world checks millions of document numbers a day."""
    return pc.is_in(pa.array(numbers.to_numpy(dtype=object), pa.string()),
                    value_set=pa.array(existing.to_numpy(dtype=object), pa.string())).to_numpy(zero_copy_only=False)


def _stamp(day: dt.date, u: np.ndarray) -> pd.Series:
    start = pd.Timestamp(day)
    return pd.Series(start + pd.to_timedelta(8 * HOUR_MS + (u * 10 * HOUR_MS).astype("int64"), unit="ms"))


def _part_plan(u_parts: np.ndarray, split: np.ndarray, most: int) -> np.ndarray:
    """How many parts each document is cut into: 1, or 2..`most` when `split`."""
    return np.where(split, 2 + np.floor(u_parts * (most - 1)).astype(int), 1)


def _part_amounts(total: np.ndarray, n: np.ndarray, first_share: np.ndarray | float):
    """Per part p (1-based): every part but the last is round(total × share, 2), the last takes
    the rest, so the parts always sum to `total`."""
    part = np.round(total * first_share, 2)
    return lambda p: np.where(p < n, part, np.round(total - (n - 1) * part, 2))


def _part_lag(n: np.ndarray, p: int, span_days: int) -> np.ndarray:
    """Days after the first part that part p falls, the parts spread evenly over `span_days`."""
    return np.where(n > 1, np.round(span_days * (p - 1) / np.maximum(n - 1, 1)), 0).astype(int)


def invoice_schedule(cfg: WorldConfig, orders: pd.DataFrame) -> pd.DataFrame:
    """Planned invoices of `orders` (one part, or 2..cfg.billing_parts over a week); empty
    parts are never issued."""
    # all the order's digits: SO-1<deal> and its duplicate SO-2<deal> must not share an invoice
    u = _uniforms(cfg.seed + 2, _digits(orders["order_number"], 3), 6)
    order_date = pd.to_datetime(orders["order_date"]).to_numpy()
    lag = (1 + np.floor(u[:, 0] * 5)).astype(int)
    never = u[:, 1] < cfg.rate("not_invoiced")
    n = _part_plan(u[:, 5], u[:, 2] < cfg.split_rate, cfg.billing_parts)
    mismatch = u[:, 3] < cfg.rate("invoice_amount_mismatch")
    total = orders["total_amount"].astype(float).to_numpy()
    billed = np.where(mismatch, np.round(total * 1.05, 2), total)
    amount_of = _part_amounts(billed, n, np.where(n == 2, SPLIT_SHARE, 1.0 / n))
    parts = []
    for part in range(1, cfg.billing_parts + 1):
        keep = ~never & (part <= n)
        due_lag = lag + _part_lag(n, part, 7)
        parts.append(pd.DataFrame({
            "invoice_number": ("INV-" + orders["order_number"].str[3:] + str(part))[keep],
            "order_number": orders["order_number"][keep], "customer_number": orders["customer_number"][keep],
            "currency": orders["currency"][keep], "amount": amount_of(part)[keep],
            "planned": (order_date + due_lag.astype("timedelta64[D]"))[keep],
            "mismatch": mismatch[keep], "u": u[keep, 4],
        }))
    plan = pd.concat(parts, ignore_index=True)
    plan.attrs["never"] = orders.loc[never, ["order_number", "order_date", "total_amount", "currency"]]
    return plan


def payment_schedule(cfg: WorldConfig, inv: pd.DataFrame) -> pd.DataFrame:
    """Planned payments of `inv`: one, or 2..cfg.billing_parts instalments over ten days."""
    u = _uniforms(cfg.seed + 3, _digits(inv["invoice_number"], 4), 6)
    issue = pd.to_datetime(inv["issue_date"]).to_numpy()
    unpaid = u[:, 0] < cfg.rate("unpaid")
    delay = (5 + np.floor(u[:, 1] * 40)).astype(int)
    n = _part_plan(u[:, 5], u[:, 2] < cfg.instalment_rate, cfg.billing_parts)
    under = u[:, 3] < cfg.rate("underpaid")
    over = u[:, 3] > 1 - cfg.rate("overpaid")
    amount = inv["amount"].astype(float).to_numpy()
    to_pay = np.round(amount * np.select([under, over], [0.9, 1.05], 1.0), 2)
    paid_of = _part_amounts(to_pay, n, 1.0 / n)
    parts = []
    for part in range(1, cfg.billing_parts + 1):
        keep = ~unpaid & (part <= n)
        lag = delay + _part_lag(n, part, 10)
        parts.append(pd.DataFrame({
            "payment_id": ("PAY-" + inv["invoice_number"].str[4:] + str(part))[keep],
            "invoice_number": inv["invoice_number"][keep], "currency": inv["currency"][keep],
            "amount": paid_of(part)[keep], "planned": (issue + lag.astype("timedelta64[D]"))[keep],
            "method": PAYMENT_METHODS[(u[keep, 4] * 4).astype(int)],
            "kind": np.select([under, over], ["underpaid", "overpaid"], None)[keep],
            "last": (part == n)[keep],
        }))
    plan = pd.concat(parts, ignore_index=True)
    plan.attrs["unpaid"] = inv.loc[unpaid, ["invoice_number", "due_date", "amount", "currency"]]
    return plan


def run_billing_day(cfg: WorldConfig, engine: Engine, day: dt.date) -> list[dict]:
    """Issue the invoices and record the payments that fall due on `day` (catching up on
    anything planned earlier and not yet done). Returns the defects this decided."""
    defects: list[dict] = []
    # Only the documents whose plan can still fall due are read: a scale world's book grows by
    # millions of rows, and re-planning all of it every day made seeding quadratic. An order is
    # billed at most 12 days after its order date (lag 5 + a week), and exists in the ERP from its
    # creation; an invoice is paid at most 54 days after its issue (delay 44 + ten days). Since the
    # billing runs every day, anything older has been billed and paid as planned.
    order_from = day - dt.timedelta(days=ORDER_WINDOW_DAYS)
    open_orders = select(sales_orders.c.order_number).where(
        sales_orders.c.status != "cancelled",
        or_(sales_orders.c.order_date >= order_from,
            sales_orders.c.created_at >= dt.datetime.combine(order_from, dt.time())))
    with engine.begin() as conn:
        orders = pd.read_sql(select(sales_orders.c.order_number, sales_orders.c.customer_number,
                                    sales_orders.c.order_date, sales_orders.c.currency,
                                    sales_orders.c.total_amount)
                             .where(sales_orders.c.order_number.in_(open_orders))
                             .order_by(sales_orders.c.order_number), conn)
        existing_inv = pd.read_sql(select(invoices.c.invoice_number)
                                   .where(invoices.c.order_number.in_(open_orders)), conn)["invoice_number"]
        day_ts = np.datetime64(day)
        if len(orders):
            plan = invoice_schedule(cfg, orders)
            due = plan[(plan["planned"] <= day_ts) & ~_known(plan["invoice_number"], existing_inv) & (plan.amount > 0)]
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

        open_invoices = select(invoices.c.invoice_number).where(
            invoices.c.issue_date >= day - dt.timedelta(days=PAYMENT_WINDOW_DAYS))
        inv = pd.read_sql(select(invoices.c.invoice_number, invoices.c.issue_date, invoices.c.due_date,
                                 invoices.c.currency, invoices.c.amount, invoices.c.status)
                          .where(invoices.c.invoice_number.in_(open_invoices))
                          .order_by(invoices.c.invoice_number), conn)
        existing_pay = pd.read_sql(select(payments.c.payment_id)
                                   .where(payments.c.invoice_number.in_(open_invoices)), conn)["payment_id"]
        if len(inv):
            pplan = payment_schedule(cfg, inv)
            due = pplan[(pplan["planned"] <= day_ts) & ~_known(pplan["payment_id"], existing_pay) & (pplan.amount > 0)]
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
    if len(settled):   # one statement, many parameter sets (a scale world settles thousands a day)
        conn.execute(update(invoices).where(invoices.c.invoice_number == bindparam("b_number"))
                     .values(status="paid", updated_at=bindparam("b_at")),
                     [{"b_number": r.invoice_number, "b_at": pd.Timestamp(r.at).to_pydatetime()}
                      for r in settled.itertuples()])


def _records(df: pd.DataFrame) -> list[dict]:
    out = df.to_dict("records")
    for rec in out:
        for k, v in rec.items():
            if isinstance(v, (np.datetime64, pd.Timestamp)):
                rec[k] = pd.Timestamp(v).to_pydatetime()
    return out


def _defect(kind: str, obj: str, key: str, day: dt.date, **details) -> dict:
    return {"kind": kind, "object": obj, "business_key": key, "day": day.isoformat(), "details": details}
