"""Reference key sets for referential rules, read from the warehouse's current state."""
from __future__ import annotations

from trueup.connectors.warehouse import Warehouse, ident

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


def present_references(wh: Warehouse, name: str, values: list[str]) -> set[str]:
    """Which of `values` are keys of the reference set `name` now: a lookup by key (the key is the
    current view's partition column, so the lookup reaches only those keys' versions), for a few
    rows where `load_references` would read every key."""
    view, column = REFERENCE_QUERIES[name]
    with wh.begin() as conn:
        if not values or not wh.table_columns(conn, "raw", view):
            return set()
    found = wh.query_df_by_keys(f"SELECT DISTINCT {ident(column)} AS k FROM raw.{ident(view)} "
                                f"WHERE {ident(column)} IN :keys", values)
    return set(found["k"].astype(str))
