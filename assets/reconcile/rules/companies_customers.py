"""companies_vs_customers: CRM customer companies ↔ ERP customers.

Pairs come from the golden customer's identity resolution (`identity.customer_pairs`: link →
tax id → deal orders → name and country → name alone), the one definition of "the same
customer" in the platform. A customer company is one with a closed-won deal (a prospect is not
expected in the ERP).

Breaks on pairs: name_mismatch (names differ after lower-casing and dropping punctuation and
spaces), country_mismatch. missing_in_erp: a customer company with no ERP customer although
the ERP holds an order for one of its won deals (its customer was keyed under a record nobody
can match), past the customer SLA after its first win — a company whose won deals have no
order at all is the deal's problem (deals_vs_orders: missing_in_erp, or pending), counted
there once. missing_in_crm: an ERP customer with no CRM partner. Pending:
ambiguous_customer_match — the golden customer found more than one possible partner and a
person must link it. No money is at risk in master data (amount_at_risk 0).
"""
from __future__ import annotations

from ..identity import customer_pairs
from ..sql import day, json_obj, norm_name, txt
from . import RuleContext


def find(ctx: RuleContext) -> tuple[int, int, int]:
    d = ctx.dialect
    ctx.temp("rc_comp", f"SELECT id, name, country, tax_id, lifecyclestage, erp_customer_number "
                        f"FROM {ctx.validated('crm_companies')}")
    ctx.temp("rc_cust", f"SELECT customer_number, name, country, tax_id, crm_company_id, "
                        f"{day('created_at')} AS created FROM {ctx.validated('erp_customers')}")
    ctx.temp("rc_won", f"SELECT id AS deal_id, company_id, {day('closedate')} AS close_date "
                       f"FROM {ctx.validated('crm_deals')} WHERE dealstage = 'closedwon' AND company_id IS NOT NULL")
    ctx.temp("rc_orders", f"SELECT crm_deal_id FROM {ctx.validated('erp_sales_orders')} "
                          "WHERE crm_deal_id IS NOT NULL AND coalesce(status, '') <> 'cancelled'")
    ctx.temp("rc_customer", "SELECT company_id, min(close_date) AS first_win, count(*) AS won, "
                            "sum(CASE WHEN deal_id IN (SELECT crm_deal_id FROM rc_orders) THEN 1 ELSE 0 END) "
                            "AS ordered FROM rc_won GROUP BY company_id")
    customer_pairs(ctx, "rc_comp", "rc_cust")
    L, R = "'crm'", "'erp'"
    pairs = ("FROM id_pair p JOIN rc_comp c ON c.id = p.company_id "
             "JOIN rc_cust u ON u.customer_number = p.customer_number")
    cols = lambda det: f"NULL, NULL, 0, NULL, {det}, u.created"  # noqa: E731
    ctx.found(f"SELECT 'name_mismatch', c.id, {L}, {R}, "
              + cols(json_obj(d, {"customer_number": "u.customer_number", "crm_name": "c.name",
                                  "erp_name": "u.name", "matched_by": "p.method"})) +
              ", 'break', 'erp', "
              + txt("'CRM company '", "c.id", "' is named \"'", "c.name", "'\" but its ERP customer '",
                    "u.customer_number", "' (matched by '", "p.method", "') is named \"'", "u.name",
                    "'\"; correct the name in the ERP'") +
              f", 'company:' || c.id {pairs} WHERE {norm_name('c.name')} <> {norm_name('u.name')}")
    ctx.found(f"SELECT 'country_mismatch', c.id, {L}, {R}, "
              + cols(json_obj(d, {"customer_number": "u.customer_number", "crm_country": "c.country",
                                  "erp_country": "u.country", "matched_by": "p.method"})) +
              ", 'break', 'erp', "
              + txt("'CRM company '", "c.id", "' is in '", "c.country", "' but its ERP customer '",
                    "u.customer_number", "' (matched by '", "p.method", "') is in '", "u.country",
                    "'; correct the country in the ERP'") +
              f", 'company:' || c.id {pairs} "
              "WHERE upper(trim(coalesce(c.country, ''))) <> upper(trim(coalesce(u.country, '')))")
    unpaired = ("c.id NOT IN (SELECT company_id FROM id_pair) "
                "AND NOT EXISTS (SELECT 1 FROM id_ambiguous a WHERE a.side = 'crm' AND a.id = c.id)")
    ctx.found("SELECT 'missing_in_erp', c.id, 'crm', 'erp', NULL, NULL, 0, NULL, "
              + json_obj(d, {"first_win": "CAST(w.first_win AS TEXT)", "won_deals": "w.won",
                             "deals_with_orders": "w.ordered"}) +
              ", w.first_win, 'break', 'erp', "
              + txt("'customer company '", "c.id", "' (\"'", "c.name", "'\", first deal won '", "w.first_win",
                    "') has ERP orders for '", "w.ordered", "' of its won deals, but no ERP customer is matched to "
                    "it: link the ERP customer of those orders to the company'") +
              ", 'company:' || c.id FROM rc_comp c JOIN rc_customer w ON w.company_id = c.id "
              f"WHERE w.ordered > 0 AND {unpaired} AND {ctx.as_of_sql()} - w.first_win > :cust_sla")
    ctx.found("SELECT 'missing_in_crm', u.customer_number, 'crm', 'erp', NULL, NULL, 0, NULL, "
              + json_obj(d, {"crm_company_id": "u.crm_company_id", "name": "u.name"}) +
              ", u.created, 'break', 'crm', "
              + txt("'ERP customer '", "u.customer_number", "' (\"'", "u.name", "'\", created '", "u.created",
                    "') matches no CRM company by link, tax id, deal orders or name: link it or create the "
                    "company in the CRM'") +
              ", 'customer:' || u.customer_number FROM rc_cust u "
              "WHERE u.customer_number NOT IN (SELECT customer_number FROM id_pair) "
              "AND NOT EXISTS (SELECT 1 FROM id_ambiguous a WHERE a.side = 'erp' AND a.id = u.customer_number)")
    ctx.found("SELECT 'ambiguous_customer_match', c.id, 'crm', 'erp', NULL, NULL, 0, NULL, "
              + json_obj(d, {"name": "c.name", "country": "c.country"}) +
              ", w.first_win, 'pending', 'trueup', "
              + txt("'CRM company '", "c.id", "' (\"'", "c.name", "'\") has more than one possible ERP customer; "
                    "Trueup holds its orders until a person links the right one'") +
              ", 'company:' || c.id FROM rc_comp c JOIN rc_customer w ON w.company_id = c.id "
              "WHERE EXISTS (SELECT 1 FROM id_ambiguous a WHERE a.side = 'crm' AND a.id = c.id)")
    left = ctx.scalar("SELECT count(*) FROM rc_customer")
    right = ctx.scalar("SELECT count(*) FROM rc_cust")
    matched = ctx.scalar("SELECT count(*) FROM id_pair p WHERE NOT EXISTS "
                         "(SELECT 1 FROM recon_found f WHERE f.business_key = p.company_id)")
    return int(left), int(right), int(matched)
