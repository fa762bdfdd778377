"""CRM company financials from the ERP: receivables per customer, written to the CRM company
by batch upsert on its unique erp_customer_number. Only companies that already carry the
number are written (an upsert of an unknown number would create a new company)."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from trueup.connectors.warehouse import Warehouse

from .ledger import Write


def _frame(wh: Warehouse, sql: str) -> pd.DataFrame:
    try:
        return wh.query_df(sql)
    except Exception:  # noqa: BLE001 - a table not there yet means nothing to report
        return pd.DataFrame()


def financial_writes(wh: Warehouse, as_of: dt.date) -> list[Write]:
    inv = _frame(wh, "SELECT invoice_number, customer_number, due_date, amount, status "
                     "FROM validated.erp_invoices_current")
    pay = _frame(wh, "SELECT invoice_number, amount, received_at FROM validated.erp_payments_current")
    comp = _frame(wh, "SELECT erp_customer_number FROM validated.crm_companies_current "
                      "WHERE erp_customer_number IS NOT NULL")
    backs = _frame(wh, "SELECT business_key FROM ops.sor_writes WHERE target_object = 'companies' "
                       "AND target_system = 'crm' AND state = 'confirmed' AND operation = 'update'")
    known = set(comp.get("erp_customer_number", pd.Series(dtype=object))) | set(
        backs.get("business_key", pd.Series(dtype=object)))
    if inv.empty or not known:
        return []
    inv = inv[(inv["status"] != "void") & inv["customer_number"].isin(known)].copy()
    inv["amount"] = inv["amount"].astype(float)
    # no payments yet: an empty frame indexed like the invoice numbers (text), so the join holds
    paid = pay.assign(amount=pay["amount"].astype(float)).groupby("invoice_number").agg(
        paid=("amount", "sum"), last=("received_at", "max")) if not pay.empty else pd.DataFrame(
        {"paid": pd.Series(dtype=float), "last": pd.Series(dtype=object)},
        index=pd.Index([], dtype=object, name="invoice_number"))
    inv = inv.join(paid, on="invoice_number")
    inv["paid"] = inv["paid"].fillna(0.0)
    inv["open"] = (inv["amount"] - inv["paid"]).clip(lower=0)
    inv["overdue"] = inv["open"].where(pd.to_datetime(inv["due_date"]).dt.date < as_of, 0.0)
    per = inv.groupby("customer_number").agg(ar_balance=("open", "sum"), ar_overdue=("overdue", "sum"),
                                             last=("last", "max"))
    out = []
    for number, r in per.iterrows():
        props = {"ar_balance": f"{r.ar_balance:.2f}", "ar_overdue_amount": f"{r.ar_overdue:.2f}",
                 "last_payment_date": str(r["last"])[:10] if isinstance(r["last"], str) else None}
        out.append(Write(f"crm-company-financials:{number}", "crm", "companies", "upsert", number,
                         {"id": number, "id_property": "erp_customer_number",
                          "properties": {k: v for k, v in props.items() if v is not None}}))
    return out
