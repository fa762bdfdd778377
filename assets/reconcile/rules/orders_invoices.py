"""orders_vs_invoices: ERP orders ↔ invoices (one order, one or more invoices).

An order matches when the sum of its invoices equals its total within tolerance, in its currency.
Breaks: not_invoiced (no invoice more than the invoicing SLA after the order date, as of the
partition date), currency_mismatch (an invoice in another currency), invoice_amount_mismatch
(invoiced more than the order at once; invoiced less only once the order is older than
`invoice_complete_days` — split invoicing is normal until then), orphan_invoice (an invoice in
the source whose order does not exist in the source — read from raw, so a quarantined orphan
still counts as money at risk).
"""
from __future__ import annotations

from ..sql import AMOUNT, day, json_obj, num
from . import RuleContext


def find(ctx: RuleContext) -> tuple[int, int, int]:
    d = ctx.dialect
    ctx.temp("ri_orders", f"SELECT order_number, {day('order_date')} AS order_date, currency, "
                          f"CAST(total_amount AS {AMOUNT}) AS amount "
                          f"FROM {ctx.validated('erp_sales_orders')} "
                          "WHERE coalesce(status, '') <> 'cancelled'")
    ctx.temp("ri_inv", f"SELECT order_number, count(*) AS n, sum(CAST(amount AS {AMOUNT})) AS amount, "
                       "min(currency) AS ccy, max(currency) AS ccy_max, min(invoice_number) AS first_invoice "
                       f"FROM {ctx.validated('erp_invoices')} "
                       "WHERE coalesce(status, '') NOT IN ('cancelled', 'void') "
                       "GROUP BY order_number")
    L, R, asof = "'erp_orders'", "'erp_invoices'", ctx.as_of_sql()
    det = json_obj(d, {"invoices": "i.n", "first_invoice": "i.first_invoice", "invoice_currency": "i.ccy",
                       "order_date": "CAST(o.order_date AS TEXT)"})
    both = "FROM ri_orders o JOIN ri_inv i ON i.order_number = o.order_number"
    ctx.found(f"SELECT 'not_invoiced', o.order_number, {L}, {R}, o.amount, NULL, o.amount, o.currency, "
              + json_obj(d, {"order_date": "CAST(o.order_date AS TEXT)"}) +
              " FROM ri_orders o WHERE NOT EXISTS (SELECT 1 FROM ri_inv i WHERE i.order_number = o.order_number) "
              f"AND {asof} - o.order_date > :inv_sla")
    ctx.found(f"SELECT 'currency_mismatch', o.order_number, {L}, {R}, o.amount, i.amount, i.amount, o.currency, "
              f"{det} {both} WHERE i.ccy <> o.currency OR i.ccy_max <> o.currency")
    ctx.found(f"SELECT 'invoice_amount_mismatch', o.order_number, {L}, {R}, o.amount, i.amount, "
              f"abs(i.amount - o.amount), o.currency, {det} {both} WHERE i.ccy = o.currency "
              "AND i.ccy_max = o.currency AND (i.amount - o.amount > :tol "
              f"OR (o.amount - i.amount > :tol AND {asof} - o.order_date > :inv_complete))")
    ctx.found(f"SELECT 'orphan_invoice', v.invoice_number, {L}, {R}, NULL, {num(d, 'v.amount')}, "
              f"{num(d, 'v.amount')}, v.currency, " + json_obj(d, {"order_number": "v.order_number"}) +
              f" FROM {ctx.raw('erp_invoices')} v WHERE NOT EXISTS "
              f"(SELECT 1 FROM {ctx.raw('erp_sales_orders')} o WHERE o.order_number = v.order_number)")
    left = ctx.scalar("SELECT count(*) FROM ri_orders")
    right = ctx.scalar("SELECT coalesce(sum(n), 0) FROM ri_inv")
    matched = ctx.scalar(f"SELECT count(*) {both} WHERE NOT EXISTS "
                         "(SELECT 1 FROM recon_found f WHERE f.business_key = o.order_number)")
    return int(left), int(right), int(matched)
