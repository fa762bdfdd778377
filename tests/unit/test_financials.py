"""CRM company financials from the ERP's receivables, including a customer with no payment yet."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from trueup.assets.publish.financials import financial_writes
from trueup.connectors.warehouse import Warehouse


def _warehouse(tmp_path, payments: list[tuple[str, str, str]]) -> Warehouse:
    wh = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    with wh.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA validated"))
        conn.execute(sa.text("CREATE TABLE validated.erp_invoices_current AS SELECT * FROM (VALUES "
                             "('INV-1', 'C81', '2026-10-01', '100.00', 'open'), "
                             "('INV-2', 'C81', '2026-12-31', '50.00', 'open'), "
                             "('INV-3', 'C81', '2026-10-01', '70.00', 'void')) "
                             "t(invoice_number, customer_number, due_date, amount, status)"))
        conn.execute(sa.text("CREATE TABLE validated.erp_payments_current "
                             "(invoice_number TEXT, amount TEXT, received_at TEXT)"))
        for p in payments:
            conn.execute(sa.text("INSERT INTO validated.erp_payments_current VALUES (:i, :a, :r)"),
                         {"i": p[0], "a": p[1], "r": p[2]})
        conn.execute(sa.text("CREATE TABLE validated.crm_companies_current AS SELECT 'C81' AS erp_customer_number"))
    return wh


def test_receivables_with_and_without_payments(tmp_path):
    as_of = dt.date(2026, 11, 1)
    (tmp_path / "unpaid").mkdir()
    [w] = financial_writes(_warehouse(tmp_path / "unpaid", []), as_of)   # crashed before: an int index
    assert w.payload["properties"] == {"ar_balance": "150.00", "ar_overdue_amount": "100.00"}
    (tmp_path / "paid").mkdir()
    [w] = financial_writes(_warehouse(tmp_path / "paid", [("INV-1", "40.00", "2026-10-20T10:00:00Z")]), as_of)
    assert w.payload["properties"] == {"ar_balance": "110.00", "ar_overdue_amount": "60.00",
                                       "last_payment_date": "2026-10-20"}
