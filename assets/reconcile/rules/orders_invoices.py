"""orders_vs_invoices: ERP orders ↔ invoices (one order, one or more invoices).

An order matches when the sum of its invoices equals its total within tolerance, in its currency.
Invoicing lateness runs from the day the order came into existence in the ERP — the earlier of
its creation day and the business day it was first landed — not from its order date: an order
Trueup posts tonight carries the deal's close date as its order date, and is not late tonight.
Breaks: not_invoiced (no invoice more than the invoicing SLA after that day, as of the
partition date), currency_mismatch (an invoice in another currency), invoice_amount_mismatch
(invoiced more than the order at once; invoiced less only once the order is older than
`invoice_complete_days` — split invoicing is normal until then), orphan_invoice (an invoice in
the source whose order does not exist in the source — read from raw, so a quarantined orphan
still counts as money at risk). Timing: awaiting_invoice (no invoice yet, within the SLA).
"""
from __future__ import annotations

from ..sql import AMOUNT, day, json_obj, money, num, txt
from . import RuleContext


def find(ctx: RuleContext) -> tuple[int, int, int]:
    d = ctx.dialect
    ctx.temp("ri_first", "SELECT order_number, min(_partition) AS first_day FROM raw.erp_sales_orders "
                         "WHERE _partition <= :d GROUP BY order_number" if ctx.table_exists("raw", "erp_sales_orders")
             else "SELECT CAST(NULL AS TEXT) AS order_number, CAST(NULL AS TEXT) AS first_day WHERE 1 = 0",
             d=ctx.as_of.isoformat())
    ctx.temp("ri_orders", f"SELECT o.order_number, {day('o.order_date')} AS order_date, o.currency, "
                          f"CAST(o.total_amount AS {AMOUNT}) AS amount, "
                          f"least(coalesce({day('o.created_at')}, {day('o.order_date')}), "
                          f"coalesce({day('f.first_day')}, {day('o.created_at')}, {day('o.order_date')})) AS exists_from "
                          f"FROM {ctx.validated('erp_sales_orders')} o "
                          "LEFT JOIN ri_first f ON f.order_number = o.order_number "
                          "WHERE coalesce(o.status, '') <> 'cancelled'")
    ctx.temp("ri_inv", f"SELECT order_number, count(*) AS n, sum(CAST(amount AS {AMOUNT})) AS amount, "
                       "min(currency) AS ccy, max(currency) AS ccy_max, min(invoice_number) AS first_invoice, "
                       f"min({day('issue_date')}) AS first_issued, max({day('issue_date')}) AS last_issued "
                       f"FROM {ctx.validated('erp_invoices')} "
                       "WHERE coalesce(status, '') NOT IN ('cancelled', 'void') "
                       "GROUP BY order_number")
    L, R, asof = "'erp_orders'", "'erp_invoices'", ctx.as_of_sql()
    det = json_obj(d, {"invoices": "i.n", "first_invoice": "i.first_invoice", "invoice_currency": "i.ccy",
                       "order_date": "CAST(o.order_date AS TEXT)"})
    both = "FROM ri_orders o JOIN ri_inv i ON i.order_number = o.order_number"
    order_money = money("o.amount", "o.currency")
    none = "FROM ri_orders o WHERE NOT EXISTS (SELECT 1 FROM ri_inv i WHERE i.order_number = o.order_number)"
    ndet = json_obj(d, {"order_date": "CAST(o.order_date AS TEXT)", "exists_from": "CAST(o.exists_from AS TEXT)"})
    ctx.found(f"SELECT 'not_invoiced', o.order_number, {L}, {R}, o.amount, NULL, o.amount, o.currency, {ndet}, "
              "o.exists_from, 'break', 'erp', "
              + txt("'ERP order '", "o.order_number", "' ('", order_money, "', in the ERP since '", "o.exists_from",
                    "') has no invoice after the '", ":inv_sla", "'-day invoicing SLA: bill it'") +
              f", 'order:' || o.order_number {none} AND {asof} - o.exists_from > :inv_sla")
    ctx.found(f"SELECT 'awaiting_invoice', o.order_number, {L}, {R}, o.amount, NULL, o.amount, o.currency, {ndet}, "
              "o.exists_from, 'timing', 'erp', "
              + txt("'ERP order '", "o.order_number", "' (in the ERP since '", "o.exists_from",
                    "') is not invoiced yet; due within '", ":inv_sla", "' days'") +
              f", 'order:' || o.order_number {none} AND {asof} - o.exists_from <= :inv_sla")
    ctx.found(f"SELECT 'currency_mismatch', o.order_number, {L}, {R}, o.amount, i.amount, i.amount, o.currency, "
              f"{det}, i.first_issued, 'break', 'erp', "
              + txt("'ERP order '", "o.order_number", "' is in '", "o.currency", "' but invoice '", "i.first_invoice",
                    "' is in '", "i.ccy", "'; reissue the invoice'") +
              f", 'order:' || o.order_number {both} WHERE i.ccy <> o.currency OR i.ccy_max <> o.currency")
    ctx.found(f"SELECT 'invoice_amount_mismatch', o.order_number, {L}, {R}, o.amount, i.amount, "
              f"abs(i.amount - o.amount), o.currency, {det}, i.last_issued, 'break', 'erp', "
              + txt("'ERP order '", "o.order_number", "' is '", order_money, "' but its '", "i.n",
                    "' invoice(s) total '", money("i.amount", "i.ccy"), "' (differs by '", "abs(i.amount - o.amount)",
                    "'); correct the invoice'") +
              f", 'order:' || o.order_number {both} WHERE i.ccy = o.currency "
              "AND i.ccy_max = o.currency AND (i.amount - o.amount > :tol "
              f"OR (o.amount - i.amount > :tol AND {asof} - o.exists_from > :inv_complete))")
    ctx.found(f"SELECT 'orphan_invoice', v.invoice_number, {L}, {R}, NULL, {num(d, 'v.amount')}, "
              f"{num(d, 'v.amount')}, v.currency, " + json_obj(d, {"order_number": "v.order_number"}) +
              f", {day('v.issue_date')}, 'break', 'erp', "
              + txt("'invoice '", "v.invoice_number", "' ('", "v.currency", "' '", "v.amount", "') is for order '",
                    "v.order_number", "', which the ERP does not have'") +
              f", 'invoice:' || v.invoice_number FROM {ctx.raw('erp_invoices')} v WHERE NOT EXISTS "
              f"(SELECT 1 FROM {ctx.raw('erp_sales_orders')} o WHERE o.order_number = v.order_number)")
    left = ctx.scalar("SELECT count(*) FROM ri_orders")
    right = ctx.scalar("SELECT coalesce(sum(n), 0) FROM ri_inv")
    matched = ctx.scalar(f"SELECT count(*) {both} WHERE NOT EXISTS "
                         "(SELECT 1 FROM recon_found f WHERE f.business_key = o.order_number)")
    return int(left), int(right), int(matched)
