"""deals_vs_orders: CRM closed-won deals ↔ ERP sales orders.

Matching, in order:
1. linked — the order carries the deal id (`crm_deal_id`), or a person linked the deal's held
   write to it (`trueup writes link`, ops.sor_writes.linked_order_number).
2. duplicate — an unlinked order with the same customer, currency and amount (within tolerance)
   as a deal's linked order, dated within the match window of it: the clerk keyed it twice.
3. waiting — Trueup holds the deal's order for a person (ops.sor_writes `held`: a likely
   duplicate of a manual order, an ambiguous customer; `awaiting_approval`: above the approval
   threshold). Known, pending work with its amount and age: `held_for_review` /
   `pending_approval`, never a missing order. The manual orders named in the hold (or equal to
   the deal) belong to that review, not to missing_in_crm.
4. paired — a deal with no linked order and exactly one unlinked order (not a duplicate) with
   the deal's currency and amount, dated 0..window days after the close, for the deal company's
   ERP customer when that is known; the order has exactly one such deal too. A match.
5. probable — the same, one-to-one, for the deal company's ERP customer (the golden customer,
   assets/reconcile/identity.py), where the amount differs by at most `probable_amount_pct` or
   only the currency differs: one amount_mismatch / currency_mismatch break, not a missing
   order plus a missing deal.
Breaks: duplicate_order, amount_mismatch / currency_mismatch / customer_mismatch (linked or
probable), missing_in_erp (no order, closed more than the order SLA ago), missing_in_crm (an
order neither linked, duplicate, paired nor under review). Timing: awaiting_order (closed, no
order yet, within the SLA).
"""
from __future__ import annotations


from ..identity import customer_pairs
from ..sql import AMOUNT, day, json_obj, money, txt
from . import RuleContext


def _ledger(ctx: RuleContext) -> None:
    """rd_wait (deals whose order waits for a person) and rd_person_link (deals a person linked to
    an existing order), from the write ledger; empty when nothing was ever published."""
    cols = set(ctx.columns("ops", "sor_writes"))
    if "business_date" in cols:
        # waiting as of the business date: planned on or before it and still waiting
        ctx.temp("rd_wait", "SELECT business_key AS deal_id, max(state) AS state, max(hold_reason) AS hold_reason, "
                            "min(business_date) AS since FROM ops.sor_writes WHERE target_object = 'sales_orders' "
                            "AND state IN ('held', 'awaiting_approval') AND coalesce(business_date, '') <= :as_of_text "
                            "GROUP BY business_key", as_of_text=ctx.as_of.isoformat())
    else:
        ctx.temp("rd_wait", "SELECT CAST(NULL AS TEXT) AS deal_id, CAST(NULL AS TEXT) AS state, "
                            "CAST(NULL AS TEXT) AS hold_reason, CAST(NULL AS TEXT) AS since WHERE 1 = 0")
    if "linked_order_number" in cols:
        ctx.temp("rd_person_link", "SELECT business_key AS deal_id, max(linked_order_number) AS order_number "
                                   "FROM ops.sor_writes WHERE state = 'linked' AND linked_order_number IS NOT NULL "
                                   "AND target_object = 'sales_orders' GROUP BY business_key")
    else:
        ctx.temp("rd_person_link", "SELECT CAST(NULL AS TEXT) AS deal_id, CAST(NULL AS TEXT) AS order_number "
                                   "WHERE 1 = 0")


def find(ctx: RuleContext) -> tuple[int, int, int]:
    d = ctx.dialect
    _ledger(ctx)
    ctx.temp("rd_deals", f"SELECT id AS deal_id, CAST(amount AS {AMOUNT}) AS amount, deal_currency_code AS currency, "
                         f"{day('closedate')} AS close_date, company_id FROM {ctx.validated('crm_deals')} "
                         "WHERE dealstage = 'closedwon'")
    ctx.temp("rd_orders", f"SELECT o.order_number, o.customer_number, coalesce(o.crm_deal_id, k.deal_id) AS crm_deal_id, "
                          f"k.deal_id AS linked_by_person, {day('o.order_date')} AS order_date, o.currency, "
                          f"CAST(o.total_amount AS {AMOUNT}) AS amount FROM {ctx.validated('erp_sales_orders')} o "
                          "LEFT JOIN rd_person_link k ON k.order_number = o.order_number AND o.crm_deal_id IS NULL "
                          "WHERE coalesce(o.status, '') <> 'cancelled'")
    customer_pairs(ctx, ctx.validated("crm_companies"), ctx.validated("erp_customers"))
    ctx.temp("rd_linked", "SELECT o.crm_deal_id AS deal_id, count(*) AS n, min(o.order_number) AS order_number, "
                          "sum(o.amount) AS amount, min(o.currency) AS ccy, max(o.currency) AS ccy_max, "
                          "min(o.customer_number) AS customer_number, min(o.order_date) AS first_date, "
                          "max(o.order_date) AS last_date, max(o.linked_by_person) AS by_person FROM rd_orders o "
                          "JOIN rd_deals d ON d.deal_id = o.crm_deal_id GROUP BY o.crm_deal_id")
    ctx.temp("rd_dup", "SELECT u.order_number, min(l.crm_deal_id) AS deal_id, min(u.amount) AS amount, "
                       "min(u.currency) AS currency, min(u.order_date) AS order_date FROM rd_orders u JOIN rd_orders l "
                       "ON u.crm_deal_id IS NULL AND l.crm_deal_id IN (SELECT deal_id FROM rd_deals) "
                       "AND u.customer_number = l.customer_number AND u.currency = l.currency "
                       "AND abs(u.amount - l.amount) <= :tol AND abs(u.order_date - l.order_date) <= :window "
                       "GROUP BY u.order_number")
    open_deal = "NOT EXISTS (SELECT 1 FROM rd_linked l WHERE l.deal_id = d.deal_id)"
    waiting = "EXISTS (SELECT 1 FROM rd_wait w WHERE w.deal_id = d.deal_id)"
    free_order = ("u.crm_deal_id IS NULL AND NOT EXISTS (SELECT 1 FROM rd_dup x WHERE x.order_number = "
                  "u.order_number)")
    ctx.temp("rd_cand", "SELECT d.deal_id, u.order_number FROM rd_deals d JOIN rd_orders u "
                        "ON u.currency = d.currency AND abs(u.amount - d.amount) <= :tol "
                        "AND u.order_date - d.close_date BETWEEN -1 AND :window "
                        f"WHERE {open_deal} AND {free_order} "
                        "AND (NOT EXISTS (SELECT 1 FROM id_pair m WHERE m.company_id = d.company_id) "
                        " OR EXISTS (SELECT 1 FROM id_pair m WHERE m.company_id = d.company_id "
                        "  AND m.customer_number = u.customer_number))")
    # the manual orders a held deal is under review with: named in the hold, or equal to the deal
    ctx.temp("rd_review", "SELECT w.deal_id, u.order_number FROM rd_wait w JOIN rd_orders u "
                          "ON u.crm_deal_id IS NULL AND (' ' || replace(coalesce(w.hold_reason, ''), ',', ' ') || ' ') "
                          "LIKE ('% ' || u.order_number || ' %') UNION "
                          "SELECT c.deal_id, c.order_number FROM rd_cand c JOIN rd_wait w ON w.deal_id = c.deal_id")
    ctx.temp("rd_paired", "SELECT deal_id, min(order_number) AS order_number FROM rd_cand c "
                          "WHERE NOT EXISTS (SELECT 1 FROM rd_wait w WHERE w.deal_id = c.deal_id) "
                          "AND deal_id IN (SELECT deal_id FROM rd_cand GROUP BY deal_id HAVING count(*) = 1) "
                          "AND order_number IN (SELECT order_number FROM rd_cand GROUP BY order_number "
                          "HAVING count(*) = 1) GROUP BY deal_id")
    ctx.temp("rd_pcand", "SELECT d.deal_id, u.order_number FROM rd_deals d JOIN rd_orders u "
                         "ON u.order_date - d.close_date BETWEEN -1 AND :window "
                         "AND ((u.currency = d.currency AND abs(u.amount - d.amount) <= :pct * abs(d.amount)) "
                         "  OR (u.currency <> d.currency AND abs(u.amount - d.amount) <= :tol)) "
                         f"WHERE {open_deal} AND NOT {waiting} AND {free_order} "
                         "AND d.deal_id NOT IN (SELECT deal_id FROM rd_paired) "
                         "AND u.order_number NOT IN (SELECT order_number FROM rd_paired) "
                         "AND u.order_number NOT IN (SELECT order_number FROM rd_review) "
                         "AND EXISTS (SELECT 1 FROM id_pair m WHERE m.company_id = d.company_id "
                         "AND m.customer_number = u.customer_number)",
             pct=ctx.settings.probable_amount_pct)
    ctx.temp("rd_probable", "SELECT c.deal_id, min(c.order_number) AS order_number FROM rd_pcand c "
                            "WHERE deal_id IN (SELECT deal_id FROM rd_pcand GROUP BY deal_id HAVING count(*) = 1) "
                            "AND order_number IN (SELECT order_number FROM rd_pcand GROUP BY order_number "
                            "HAVING count(*) = 1) GROUP BY c.deal_id")
    L, R = "'crm'", "'erp'"
    deal_money = money("d.amount", "d.currency")
    # duplicate_order: two linked orders, or a linked order and its unlinked twin
    ctx.found(f"SELECT 'duplicate_order', l.deal_id, {L}, {R}, d.amount, l.amount + coalesce(x.amount, 0), "
              "CASE WHEN x.amount IS NOT NULL THEN x.amount ELSE l.amount - l.amount / l.n END, d.currency, "
              + json_obj(d, {"order_number": "l.order_number", "duplicate_order_number": "x.order_number",
                             "linked_orders": "l.n"}) +
              ", coalesce(x.order_date, l.last_date), 'break', 'erp', "
              + txt("'deal '", "l.deal_id", "' (' ", deal_money, "') has '", "l.n + CASE WHEN x.order_number IS NULL "
                    "THEN 0 ELSE 1 END", "' ERP orders: '", "l.order_number", "' and '",
                    "coalesce(x.order_number, l.order_number)", "'; cancel the duplicate in the ERP'") +
              ", 'order:' || coalesce(x.order_number, l.order_number) "
              "FROM rd_linked l JOIN rd_deals d ON d.deal_id = l.deal_id "
              "LEFT JOIN (SELECT deal_id, min(order_number) AS order_number, sum(amount) AS amount, "
              "min(order_date) AS order_date FROM rd_dup GROUP BY deal_id) x ON x.deal_id = l.deal_id "
              "WHERE l.n > 1 OR x.deal_id IS NOT NULL")
    one = "FROM rd_linked l JOIN rd_deals d ON d.deal_id = l.deal_id WHERE l.n = 1"
    det = json_obj(d, {"order_number": "l.order_number", "order_currency": "l.ccy", "customer_number":
                       "l.customer_number", "linked_by": "CASE WHEN l.by_person IS NULL THEN 'deal id' "
                                                         "ELSE 'a person' END"})
    order_money = money("l.amount", "l.ccy")
    tail = ", l.first_date, 'break', 'erp', {reason}, 'order:' || l.order_number"
    ctx.found(f"SELECT 'currency_mismatch', l.deal_id, {L}, {R}, d.amount, l.amount, d.amount, d.currency, {det}"
              + tail.format(reason=txt("'deal '", "l.deal_id", "' is '", deal_money, "' but its ERP order '",
                                       "l.order_number", "' is in '", "l.ccy", "'; correct the order'")) +
              f" {one} AND l.ccy <> d.currency")
    ctx.found(f"SELECT 'amount_mismatch', l.deal_id, {L}, {R}, d.amount, l.amount, abs(l.amount - d.amount), "
              f"d.currency, {det}"
              + tail.format(reason=txt("'deal '", "l.deal_id", "' is '", deal_money, "' but its ERP order '",
                                       "l.order_number", "' is '", order_money, "' (differs by '",
                                       "abs(l.amount - d.amount)", "'); correct the order or the deal'")) +
              f" {one} AND l.ccy = d.currency AND abs(l.amount - d.amount) > :tol")
    ctx.found(f"SELECT 'customer_mismatch', l.deal_id, {L}, {R}, d.amount, l.amount, d.amount, d.currency, {det}"
              + tail.format(reason=txt("'deal '", "l.deal_id", "' belongs to CRM company '", "d.company_id",
                                       "' but its ERP order '", "l.order_number", "' is for customer '",
                                       "l.customer_number", "', which is not the ERP customer of that company'")) +
              f" {one} AND EXISTS (SELECT 1 FROM id_pair m WHERE m.company_id = d.company_id) "
              "AND NOT EXISTS (SELECT 1 FROM id_pair m WHERE m.company_id = d.company_id "
              "AND m.customer_number = l.customer_number)")
    # probable pairs: one break for the deal and its unlinked order (keyed by the deal)
    prob = ("FROM rd_probable p JOIN rd_deals d ON d.deal_id = p.deal_id "
            "JOIN rd_orders u ON u.order_number = p.order_number")
    pdet = json_obj(d, {"order_number": "u.order_number", "order_currency": "u.currency",
                        "customer_number": "u.customer_number", "linked_by": "'probable match (not linked)'"})
    unlinked_money = money("u.amount", "u.currency")
    ctx.found(f"SELECT CASE WHEN u.currency = d.currency THEN 'amount_mismatch' ELSE 'currency_mismatch' END, "
              f"d.deal_id, {L}, {R}, d.amount, u.amount, CASE WHEN u.currency = d.currency THEN abs(u.amount - d.amount) "
              f"ELSE d.amount END, d.currency, {pdet}, u.order_date, 'break', 'erp', "
              + txt("'deal '", "d.deal_id", "' ('", deal_money, "', closed '", "d.close_date",
                    "') has no linked ERP order; unlinked order '", "u.order_number", "' ('", unlinked_money,
                    "', same customer, '", "u.order_date", "') is most likely it, keyed with a different '",
                    "CASE WHEN u.currency = d.currency THEN 'amount' ELSE 'currency' END",
                    "'; correct the order and enter the deal id on it'") +
              f", 'order:' || u.order_number {prob}")
    # waiting for a person: pending work, with its amount and since when
    ctx.found(f"SELECT CASE WHEN w.state = 'awaiting_approval' THEN 'pending_approval' ELSE 'held_for_review' END, "
              f"d.deal_id, {L}, {R}, d.amount, NULL, d.amount, d.currency, "
              + json_obj(d, {"close_date": "CAST(d.close_date AS TEXT)", "waiting_since": "w.since",
                             "why": "w.hold_reason",
                             "orders_under_review": "(SELECT min(r.order_number) FROM rd_review r "
                                                    "WHERE r.deal_id = d.deal_id)"}) +
              ", d.close_date, 'pending', 'trueup', "
              + txt("'Trueup holds the ERP order for deal '", "d.deal_id", "' ('", deal_money, "') since '", "w.since",
                    "': '", "w.hold_reason", "CASE WHEN w.state = 'awaiting_approval' THEN "
                    "'; approve it (trueup approve erp-order:crm-deal:' || d.deal_id || ')' ELSE "
                    "'; link the existing order (trueup writes link erp-order:crm-deal:' || d.deal_id || "
                    "' --order SO-…) or release it (trueup writes release erp-order:crm-deal:' || d.deal_id || ')' END") +
              ", 'deal:' || d.deal_id FROM rd_deals d JOIN rd_wait w ON w.deal_id = d.deal_id "
              f"WHERE {open_deal}")
    unmatched = (f"{open_deal} AND NOT {waiting} AND d.deal_id NOT IN (SELECT deal_id FROM rd_paired) "
                 "AND d.deal_id NOT IN (SELECT deal_id FROM rd_probable)")
    ddet = json_obj(d, {"close_date": "CAST(d.close_date AS TEXT)",
                        "candidates": "(SELECT count(*) FROM rd_cand c WHERE c.deal_id = d.deal_id)"})
    ctx.found(f"SELECT 'missing_in_erp', d.deal_id, {L}, {R}, d.amount, NULL, d.amount, d.currency, {ddet}, "
              "d.close_date, 'break', 'erp', "
              + txt("'closed-won deal '", "d.deal_id", "' ('", deal_money, "', closed '", "d.close_date",
                    "') has no ERP sales order after the '", ":order_sla", "'-day SLA, and no unlinked order "
                    "matches it: the revenue is not ordered'") +
              f", 'deal:' || d.deal_id FROM rd_deals d WHERE {unmatched} "
              f"AND {ctx.as_of_sql()} - d.close_date > :order_sla")
    ctx.found(f"SELECT 'awaiting_order', d.deal_id, {L}, {R}, d.amount, NULL, d.amount, d.currency, {ddet}, "
              "d.close_date, 'timing', 'erp', "
              + txt("'deal '", "d.deal_id", "' closed '", "d.close_date", "'; its ERP order is not due until '",
                    ":order_sla", "' days after the close'") +
              f", 'deal:' || d.deal_id FROM rd_deals d WHERE {unmatched} "
              f"AND {ctx.as_of_sql()} - d.close_date <= :order_sla")
    ctx.found(f"SELECT 'missing_in_crm', o.order_number, {L}, {R}, NULL, o.amount, o.amount, o.currency, "
              + json_obj(d, {"crm_deal_id": "o.crm_deal_id", "customer_number": "o.customer_number",
                             "order_date": "CAST(o.order_date AS TEXT)"}) +
              ", o.order_date, 'break', 'erp', "
              + txt("'ERP order '", "o.order_number", "' ('", money("o.amount", "o.currency"), "', customer '",
                    "o.customer_number", "', '", "o.order_date", "') matches no closed-won CRM deal'",
                    "CASE WHEN o.crm_deal_id IS NOT NULL THEN ' (its deal id ' || o.crm_deal_id || "
                    "' is not a closed-won deal)' ELSE '' END", "'; enter the deal id on the order, or cancel it'") +
              ", 'order:' || o.order_number FROM rd_orders o "
              "WHERE NOT EXISTS (SELECT 1 FROM rd_deals x WHERE x.deal_id = o.crm_deal_id) "
              "AND NOT EXISTS (SELECT 1 FROM rd_dup x WHERE x.order_number = o.order_number) "
              "AND NOT EXISTS (SELECT 1 FROM rd_paired p WHERE p.order_number = o.order_number) "
              "AND NOT EXISTS (SELECT 1 FROM rd_probable p WHERE p.order_number = o.order_number) "
              "AND NOT EXISTS (SELECT 1 FROM rd_review p WHERE p.order_number = o.order_number)")
    left = ctx.scalar("SELECT count(*) FROM rd_deals")
    right = ctx.scalar("SELECT count(*) FROM rd_orders")
    matched = ctx.scalar("SELECT count(*) FROM (SELECT deal_id FROM rd_linked UNION SELECT deal_id FROM rd_paired) m "
                         "WHERE NOT EXISTS (SELECT 1 FROM recon_found f WHERE f.business_key = m.deal_id)")
    return int(left), int(right), int(matched)
