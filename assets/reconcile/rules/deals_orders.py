"""deals_vs_orders: CRM closed-won deals ↔ ERP sales orders.

Matching, in order:
1. linked — the order carries the deal id (`crm_deal_id`).
2. duplicate — an unlinked order with the same customer, currency and amount (within tolerance)
   as a deal's linked order, dated within the match window of it: the clerk keyed it twice.
3. paired — a deal with no linked order and exactly one unlinked order (not a duplicate) with
   the deal's currency and amount, dated 0..window days after the close, for the deal company's
   ERP customer when that mapping is known; the order has exactly one such deal too. A pair is a
   match (the missing link is not money at risk), counted in `matched_probable`.
Breaks: duplicate_order (deal), amount_mismatch / currency_mismatch / customer_mismatch
(deal with one linked order), missing_in_erp (deal with no order, closed more than the order SLA
ago), missing_in_crm (order neither linked to a closed-won deal, nor paired, nor a duplicate).
"""
from __future__ import annotations

from ..sql import AMOUNT, day, json_obj
from . import RuleContext


def find(ctx: RuleContext) -> tuple[int, int, int]:
    d = ctx.dialect
    ctx.temp("rd_deals", f"SELECT id AS deal_id, CAST(amount AS {AMOUNT}) AS amount, deal_currency_code AS currency, "
                         f"{day('closedate')} AS close_date, company_id FROM {ctx.validated('crm_deals')} "
                         "WHERE dealstage = 'closedwon'")
    ctx.temp("rd_orders", f"SELECT order_number, customer_number, crm_deal_id, {day('order_date')} AS order_date, "
                          f"currency, CAST(total_amount AS {AMOUNT}) AS amount "
                          f"FROM {ctx.validated('erp_sales_orders')} "
                          "WHERE coalesce(status, '') <> 'cancelled'")
    ctx.temp("rd_custmap", "SELECT crm_company_id AS company_id, customer_number "
                           f"FROM {ctx.validated('erp_customers')} "
                           "WHERE crm_company_id IS NOT NULL UNION SELECT id, erp_customer_number "
                           f"FROM {ctx.validated('crm_companies')} WHERE erp_customer_number IS NOT NULL")
    ctx.temp("rd_linked", "SELECT o.crm_deal_id AS deal_id, count(*) AS n, min(o.order_number) AS order_number, "
                          "sum(o.amount) AS amount, min(o.currency) AS ccy, max(o.currency) AS ccy_max, "
                          "min(o.customer_number) AS customer_number FROM rd_orders o "
                          "JOIN rd_deals d ON d.deal_id = o.crm_deal_id GROUP BY o.crm_deal_id")
    ctx.temp("rd_dup", "SELECT u.order_number, min(l.crm_deal_id) AS deal_id, min(u.amount) AS amount, "
                       "min(u.currency) AS currency FROM rd_orders u JOIN rd_orders l "
                       "ON u.crm_deal_id IS NULL AND l.crm_deal_id IN (SELECT deal_id FROM rd_deals) "
                       "AND u.customer_number = l.customer_number AND u.currency = l.currency "
                       "AND abs(u.amount - l.amount) <= :tol AND abs(u.order_date - l.order_date) <= :window "
                       "GROUP BY u.order_number")
    ctx.temp("rd_cand", "SELECT d.deal_id, u.order_number FROM rd_deals d JOIN rd_orders u "
                        "ON u.crm_deal_id IS NULL AND u.currency = d.currency AND abs(u.amount - d.amount) <= :tol "
                        "AND u.order_date - d.close_date BETWEEN -1 AND :window "
                        "WHERE NOT EXISTS (SELECT 1 FROM rd_linked l WHERE l.deal_id = d.deal_id) "
                        "AND NOT EXISTS (SELECT 1 FROM rd_dup x WHERE x.order_number = u.order_number) "
                        "AND (NOT EXISTS (SELECT 1 FROM rd_custmap m WHERE m.company_id = d.company_id) "
                        " OR EXISTS (SELECT 1 FROM rd_custmap m WHERE m.company_id = d.company_id "
                        "  AND m.customer_number = u.customer_number))")
    ctx.temp("rd_paired", "SELECT deal_id, min(order_number) AS order_number FROM rd_cand "
                          "WHERE deal_id IN (SELECT deal_id FROM rd_cand GROUP BY deal_id HAVING count(*) = 1) "
                          "AND order_number IN (SELECT order_number FROM rd_cand GROUP BY order_number "
                          "HAVING count(*) = 1) GROUP BY deal_id")
    L, R = "'crm'", "'erp'"
    # duplicate_order: two linked orders, or a linked order and its unlinked twin
    ctx.found(f"SELECT 'duplicate_order', l.deal_id, {L}, {R}, d.amount, l.amount + coalesce(x.amount, 0), "
              "CASE WHEN x.amount IS NOT NULL THEN x.amount ELSE l.amount - l.amount / l.n END, d.currency, "
              + json_obj(d, {"order_number": "l.order_number", "duplicate_order_number": "x.order_number",
                             "linked_orders": "l.n"}) +
              " FROM rd_linked l JOIN rd_deals d ON d.deal_id = l.deal_id "
              "LEFT JOIN (SELECT deal_id, min(order_number) AS order_number, sum(amount) AS amount FROM rd_dup "
              "GROUP BY deal_id) x ON x.deal_id = l.deal_id WHERE l.n > 1 OR x.deal_id IS NOT NULL")
    one = "FROM rd_linked l JOIN rd_deals d ON d.deal_id = l.deal_id WHERE l.n = 1"
    det = json_obj(d, {"order_number": "l.order_number", "order_currency": "l.ccy", "customer_number":
                       "l.customer_number"})
    ctx.found(f"SELECT 'currency_mismatch', l.deal_id, {L}, {R}, d.amount, l.amount, d.amount, d.currency, {det} "
              f"{one} AND l.ccy <> d.currency")
    ctx.found(f"SELECT 'amount_mismatch', l.deal_id, {L}, {R}, d.amount, l.amount, abs(l.amount - d.amount), "
              f"d.currency, {det} {one} AND l.ccy = d.currency AND abs(l.amount - d.amount) > :tol")
    ctx.found(f"SELECT 'customer_mismatch', l.deal_id, {L}, {R}, d.amount, l.amount, d.amount, d.currency, {det} "
              f"{one} AND EXISTS (SELECT 1 FROM rd_custmap m WHERE m.company_id = d.company_id) "
              "AND NOT EXISTS (SELECT 1 FROM rd_custmap m WHERE m.company_id = d.company_id "
              "AND m.customer_number = l.customer_number)")
    ctx.found(f"SELECT 'missing_in_erp', d.deal_id, {L}, {R}, d.amount, NULL, d.amount, d.currency, "
              + json_obj(d, {"close_date": "CAST(d.close_date AS TEXT)",
                             "candidates": "(SELECT count(*) FROM rd_cand c WHERE c.deal_id = d.deal_id)"}) +
              " FROM rd_deals d WHERE NOT EXISTS (SELECT 1 FROM rd_linked l WHERE l.deal_id = d.deal_id) "
              "AND NOT EXISTS (SELECT 1 FROM rd_paired p WHERE p.deal_id = d.deal_id) "
              f"AND {ctx.as_of_sql()} - d.close_date > :order_sla")
    ctx.found(f"SELECT 'missing_in_crm', o.order_number, {L}, {R}, NULL, o.amount, o.amount, o.currency, "
              + json_obj(d, {"crm_deal_id": "o.crm_deal_id", "customer_number": "o.customer_number",
                             "order_date": "CAST(o.order_date AS TEXT)"}) +
              " FROM rd_orders o WHERE NOT EXISTS (SELECT 1 FROM rd_deals x WHERE x.deal_id = o.crm_deal_id) "
              "AND NOT EXISTS (SELECT 1 FROM rd_dup x WHERE x.order_number = o.order_number) "
              "AND NOT EXISTS (SELECT 1 FROM rd_paired p WHERE p.order_number = o.order_number)")
    left = ctx.scalar("SELECT count(*) FROM rd_deals")
    right = ctx.scalar("SELECT count(*) FROM rd_orders")
    matched = ctx.scalar("SELECT count(*) FROM (SELECT deal_id FROM rd_linked UNION SELECT deal_id FROM rd_paired) m "
                         "WHERE NOT EXISTS (SELECT 1 FROM recon_found f WHERE f.business_key = m.deal_id)")
    return int(left), int(right), int(matched)
