"""invoices_vs_payments: invoices ↔ payments (one invoice, any number of payments).

An invoice matches when the sum of its payments equals its amount within tolerance.
Breaks: overpaid (paid more, at once), underpaid (paid something but less, once past due),
unpaid_past_due (nothing paid and past the due date, as of the partition date),
currency_mismatch (a payment in another currency), orphan_payment (a payment in the source whose
invoice does not exist in the source; read from raw because the inbound contract quarantines
exactly these rows). Timing: partially_paid (paid in part, not yet due — instalments are
normal). An invoice that is open and not yet due is ordinary receivables, not listed.
Each break's chain is its order (`order:<number>`): an order's problems count their money once.
"""
from __future__ import annotations

from ..sql import AMOUNT, day, json_obj, money, num, txt
from . import RuleContext


def find(ctx: RuleContext) -> tuple[int, int, int]:
    d = ctx.dialect
    ctx.temp("rp_inv", f"SELECT invoice_number, order_number, {day('due_date')} AS due_date, currency, "
                       f"CAST(amount AS {AMOUNT}) AS amount FROM {ctx.validated('erp_invoices')} "
                       "WHERE coalesce(status, '') NOT IN ('cancelled', 'void')")
    ctx.temp("rp_pay", f"SELECT invoice_number, count(*) AS n, sum(CAST(amount AS {AMOUNT})) AS amount, "
                       "min(currency) AS ccy, max(currency) AS ccy_max, max(received_at) AS last_received "
                       f"FROM {ctx.validated('erp_payments')} GROUP BY invoice_number")
    L, R, asof = "'erp_invoices'", "'erp_payments'", ctx.as_of_sql()
    det = json_obj(d, {"payments": "p.n", "due_date": "CAST(i.due_date AS TEXT)",
                       "last_received": "p.last_received", "payment_currency": "p.ccy",
                       "order_number": "i.order_number"})
    both = "FROM rp_inv i JOIN rp_pay p ON p.invoice_number = i.invoice_number"
    same = "p.ccy = i.currency AND p.ccy_max = i.currency"
    inv_money, paid_money = money("i.amount", "i.currency"), money("p.amount", "p.ccy")
    chain = ", 'order:' || i.order_number"
    ctx.found(f"SELECT 'unpaid_past_due', i.invoice_number, {L}, {R}, i.amount, NULL, i.amount, i.currency, "
              + json_obj(d, {"due_date": "CAST(i.due_date AS TEXT)", "order_number": "i.order_number"}) +
              ", i.due_date, 'break', 'erp', "
              + txt("'invoice '", "i.invoice_number", "' ('", inv_money, "', order '", "i.order_number",
                    "') was due '", "i.due_date", "' and nothing is paid: collect it'") + chain +
              " FROM rp_inv i WHERE NOT EXISTS (SELECT 1 FROM rp_pay p WHERE p.invoice_number = i.invoice_number) "
              f"AND {asof} > i.due_date")
    ctx.found(f"SELECT 'currency_mismatch', i.invoice_number, {L}, {R}, i.amount, p.amount, p.amount, i.currency, "
              f"{det}, {day('p.last_received')}, 'break', 'erp', "
              + txt("'invoice '", "i.invoice_number", "' is in '", "i.currency", "' but a payment came in '",
                    "p.ccy_max", "'; apply it in the invoice currency'") + chain +
              f" {both} WHERE NOT ({same})")
    ctx.found(f"SELECT 'overpaid', i.invoice_number, {L}, {R}, i.amount, p.amount, p.amount - i.amount, "
              f"i.currency, {det}, {day('p.last_received')}, 'break', 'erp', "
              + txt("'invoice '", "i.invoice_number", "' is '", inv_money, "' but '", paid_money,
                    "' was received (overpaid by '", "p.amount - i.amount", "'); refund or credit the customer'")
              + chain + f" {both} WHERE {same} AND p.amount - i.amount > :tol")
    ctx.found(f"SELECT 'underpaid', i.invoice_number, {L}, {R}, i.amount, p.amount, i.amount - p.amount, "
              f"i.currency, {det}, i.due_date, 'break', 'erp', "
              + txt("'invoice '", "i.invoice_number", "' is '", inv_money, "', due '", "i.due_date", "'; only '",
                    paid_money, "' was received: collect the remaining '", "i.amount - p.amount") + chain +
              f" {both} WHERE {same} AND i.amount - p.amount > :tol AND {asof} > i.due_date")
    ctx.found(f"SELECT 'partially_paid', i.invoice_number, {L}, {R}, i.amount, p.amount, i.amount - p.amount, "
              f"i.currency, {det}, i.due_date, 'timing', 'erp', "
              + txt("'invoice '", "i.invoice_number", "' is paid in part ('", paid_money, "' of '", inv_money,
                    "'); the rest is not due until '", "i.due_date") + chain +
              f" {both} WHERE {same} AND i.amount - p.amount > :tol AND {asof} <= i.due_date")
    ctx.found(f"SELECT 'orphan_payment', v.payment_id, {L}, {R}, NULL, {num(d, 'v.amount')}, "
              f"{num(d, 'v.amount')}, v.currency, " + json_obj(d, {"invoice_number": "v.invoice_number"}) +
              f", {day('v.received_at')}, 'break', 'erp', "
              + txt("'payment '", "v.payment_id", "' ('", "v.currency", "' '", "v.amount", "') is for invoice '",
                    "v.invoice_number", "', which the ERP does not have: find the invoice it belongs to'") +
              f", 'payment:' || v.payment_id FROM {ctx.raw('erp_payments')} v WHERE NOT EXISTS "
              f"(SELECT 1 FROM {ctx.raw('erp_invoices')} i WHERE i.invoice_number = v.invoice_number)")
    left = ctx.scalar("SELECT count(*) FROM rp_inv")
    right = ctx.scalar("SELECT coalesce(sum(n), 0) FROM rp_pay")
    matched = ctx.scalar(f"SELECT count(*) {both} WHERE NOT EXISTS "
                         "(SELECT 1 FROM recon_found f WHERE f.business_key = i.invoice_number)")
    return int(left), int(right), int(matched)
