"""What the generator's defect manifest says reconciliation must find (for the recon tests).

Kinds compared exactly (the break must be found, and no other break of that type may exist):
- missing_order → deals_vs_orders/missing_in_erp, for deals closed more than 6 days before as_of
  (the clerk may key an order up to 5 days late; younger deals are left out on both sides);
- amount_mismatch / currency_mismatch → the same type when the clerk linked the order; when the
  order is also unlinked it cannot be paired by amount or currency, so the deal is missing_in_erp
  and the order missing_in_crm;
- duplicate_order → duplicate_order (deal id);
- not_invoiced → orders_vs_invoices/not_invoiced, orders older than the 7-day SLA;
- invoice_amount_mismatch → orders_vs_invoices/invoice_amount_mismatch (order number) for orders
  older than 12 days (all planned invoice parts are issued by then);
- overpaid, orphan_payment → invoices_vs_payments, exactly;
- customer_name_mismatch / customer_country_mismatch → companies_vs_customers
  name_mismatch / country_mismatch on linked pairs.
Excluded: unpaid / underpaid (the manifest lists invoices *planned* never / short paid, at issue;
the reconciliation reports them only once past due, when late payers are breaks too — covered by
the SQL tests instead), missing_in_erp / missing_in_crm of companies (no defect kind: they depend
on whether a clerk typed a link), manual_order_after_golive (the worlds here go live after the
history), contract defects (quarantined, see test_gates).
"""
from __future__ import annotations

import datetime as dt


EXACT = {
    "deals_vs_orders": {"missing_in_erp", "missing_in_crm", "amount_mismatch", "currency_mismatch",
                        "duplicate_order", "customer_mismatch"},
    "orders_vs_invoices": {"not_invoiced", "invoice_amount_mismatch", "currency_mismatch", "orphan_invoice"},
    "invoices_vs_payments": {"overpaid", "orphan_payment", "currency_mismatch"},
    "companies_vs_customers": {"name_mismatch", "country_mismatch"},
}


def expected_breaks(defects: list[dict], wh, as_of: dt.date) -> set[tuple[str, str, str]]:
    by_kind: dict[str, dict[str, dict]] = {}
    for d in defects:
        by_kind.setdefault(d["kind"], {})[d["business_key"]] = d
    unlinked = set(by_kind.get("unlinked_manual_order", {}))
    exp = set()
    for kind in ("amount_mismatch", "currency_mismatch"):
        for deal, d in by_kind.get(kind, {}).items():
            if deal in unlinked:
                exp.add(("deals_vs_orders", "missing_in_erp", deal))
                exp.add(("deals_vs_orders", "missing_in_crm", d["details"]["order_number"]))
            else:
                exp.add(("deals_vs_orders", kind, deal))
    exp |= {("deals_vs_orders", "missing_in_erp", k) for k in by_kind.get("missing_order", {})}
    exp |= {("deals_vs_orders", "duplicate_order", k) for k in by_kind.get("duplicate_order", {})}
    exp |= {("orders_vs_invoices", "not_invoiced", k) for k in by_kind.get("not_invoiced", {})}
    exp |= {("orders_vs_invoices", "invoice_amount_mismatch", d["details"]["order_number"])
            for d in by_kind.get("invoice_amount_mismatch", {}).values()}
    exp |= {("invoices_vs_payments", "overpaid", k) for k in by_kind.get("overpaid", {})}
    exp |= {("invoices_vs_payments", "orphan_payment", k) for k in by_kind.get("orphan_payment", {})}
    exp |= {("companies_vs_customers", "name_mismatch", k) for k in by_kind.get("customer_name_mismatch", {})}
    exp |= {("companies_vs_customers", "country_mismatch", k)
            for k in by_kind.get("customer_country_mismatch", {})}
    return exp


def in_horizon(wh, as_of: dt.date) -> callable:
    """A filter keeping (recon, type, key) whose record is old enough to be judged exactly."""
    deals = wh.query_df("SELECT id, substr(closedate, 1, 10) AS d FROM validated.crm_deals_current")
    orders = wh.query_df("SELECT order_number, crm_deal_id, order_date AS d FROM validated.erp_sales_orders_current")
    close = {k: dt.date.fromisoformat(v) for k, v in zip(deals["id"], deals["d"]) if isinstance(v, str)}
    odate = {k: dt.date.fromisoformat(v) for k, v in zip(orders["order_number"], orders["d"])}
    age = lambda day: (as_of - day).days if day else 10**6  # noqa: E731

    def keep(item) -> bool:
        recon, kind, key = item
        if recon == "deals_vs_orders":
            if kind == "missing_in_crm":
                return age(odate.get(key)) > 6
            return age(close.get(key)) > 6
        if recon == "orders_vs_invoices" and kind == "not_invoiced":
            return age(odate.get(key)) > 7
        if recon == "orders_vs_invoices" and kind == "invoice_amount_mismatch":
            return age(odate.get(key)) > 12
        return True
    return keep


def found_breaks(wh) -> set[tuple[str, str, str]]:
    b = wh.query_df("SELECT recon_name, break_type, business_key FROM recon.breaks WHERE status = 'open'")
    return {t for t in map(tuple, b.values.tolist()) if t[1] in EXACT.get(t[0], ())}


def compare(defects, wh, as_of) -> tuple[set, set]:
    keep = in_horizon(wh, as_of)
    exp = {t for t in expected_breaks(defects, wh, as_of) if keep(t)}
    got = {t for t in found_breaks(wh) if keep(t)}
    return exp - got, got - exp   # missed, false
