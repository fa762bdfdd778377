"""Reference key sets for referential rules, read from the warehouse's current state."""
from __future__ import annotations

from trueup.connectors.warehouse import Warehouse

REFERENCE_QUERIES = {
    "crm_company_ids": ("crm_companies_current", "id"),
    "erp_customer_numbers": ("erp_customers_current", "customer_number"),
    "erp_order_numbers": ("erp_sales_orders_current", "order_number"),
    "erp_invoice_numbers": ("erp_invoices_current", "invoice_number"),
}


def load_references(wh: Warehouse, names: set[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with wh.begin() as conn:
        for name in sorted(names):
            view, column = REFERENCE_QUERIES[name]
            if not wh.table_columns(conn, "raw", view):
                out[name] = []
                continue
            df = wh.read_df(conn, f"SELECT DISTINCT {column} AS k FROM raw.{view} WHERE {column} IS NOT NULL")
            out[name] = df["k"].astype(str).tolist()
    return out
