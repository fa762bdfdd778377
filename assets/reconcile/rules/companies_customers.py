"""companies_vs_customers: CRM customer companies ↔ ERP customers.

A pair is linked by the ERP customer's `crm_company_id`, or the CRM company's
`erp_customer_number`, or — for records linked neither way — by an equal tax id that is unique
on both sides. Breaks on pairs: name_mismatch (names differ after lower-casing and dropping
punctuation and spaces), country_mismatch. missing_in_erp: a company in lifecycle stage
`customer`, unpaired, last changed more than `customer_sla_days` ago; missing_in_crm: an ERP
customer with no pair. No money is at risk in master data (amount_at_risk 0).
"""
from __future__ import annotations

from ..sql import day, json_obj, norm_name
from . import RuleContext


def find(ctx: RuleContext) -> tuple[int, int, int]:
    d = ctx.dialect
    ctx.temp("rc_comp", f"SELECT id, name, country, tax_id, lifecyclestage, erp_customer_number, "
                        f"{day('updated_at')} AS changed FROM {ctx.validated('crm_companies')}")
    ctx.temp("rc_cust", "SELECT customer_number, name, country, tax_id, crm_company_id "
                        f"FROM {ctx.validated('erp_customers')}")
    ctx.temp("rc_link", "SELECT c.id AS company_id, u.customer_number FROM rc_comp c JOIN rc_cust u "
                        "ON u.crm_company_id = c.id UNION SELECT c.id, u.customer_number FROM rc_comp c "
                        "JOIN rc_cust u ON c.erp_customer_number = u.customer_number")
    ctx.temp("rc_pair", "SELECT company_id, customer_number FROM rc_link UNION "
                        "SELECT c.id, u.customer_number FROM rc_comp c JOIN rc_cust u ON c.tax_id = u.tax_id "
                        "WHERE c.tax_id IS NOT NULL AND c.tax_id <> '' "
                        "AND c.id NOT IN (SELECT company_id FROM rc_link) "
                        "AND u.customer_number NOT IN (SELECT customer_number FROM rc_link) "
                        "AND c.tax_id IN (SELECT tax_id FROM rc_comp GROUP BY tax_id HAVING count(*) = 1) "
                        "AND u.tax_id IN (SELECT tax_id FROM rc_cust GROUP BY tax_id HAVING count(*) = 1)")
    L, R = "'crm'", "'erp'"
    pairs = ("FROM rc_pair p JOIN rc_comp c ON c.id = p.company_id "
             "JOIN rc_cust u ON u.customer_number = p.customer_number")
    det = json_obj(d, {"customer_number": "u.customer_number"})
    ctx.found(f"SELECT 'name_mismatch', c.id, {L}, {R}, NULL, NULL, 0, NULL, {det} {pairs} "
              f"WHERE {norm_name('c.name')} <> {norm_name('u.name')}")
    ctx.found(f"SELECT 'country_mismatch', c.id, {L}, {R}, NULL, NULL, 0, NULL, "
              + json_obj(d, {"customer_number": "u.customer_number", "crm_country": "c.country",
                             "erp_country": "u.country"}) +
              f" {pairs} WHERE upper(trim(coalesce(c.country, ''))) <> upper(trim(coalesce(u.country, '')))")
    ctx.found(f"SELECT 'missing_in_erp', c.id, {L}, {R}, NULL, NULL, 0, NULL, "
              + json_obj(d, {"changed": "CAST(c.changed AS TEXT)"}) +
              " FROM rc_comp c WHERE c.lifecyclestage = 'customer' "
              "AND c.id NOT IN (SELECT company_id FROM rc_pair) "
              f"AND {ctx.as_of_sql()} - c.changed > :cust_sla")
    ctx.found(f"SELECT 'missing_in_crm', u.customer_number, {L}, {R}, NULL, NULL, 0, NULL, "
              + json_obj(d, {"crm_company_id": "u.crm_company_id"}) +
              " FROM rc_cust u WHERE u.customer_number NOT IN (SELECT customer_number FROM rc_pair)")
    left = ctx.scalar("SELECT count(*) FROM rc_comp WHERE lifecyclestage = 'customer'")
    right = ctx.scalar("SELECT count(*) FROM rc_cust")
    matched = ctx.scalar("SELECT count(*) FROM rc_pair p WHERE NOT EXISTS "
                         "(SELECT 1 FROM recon_found f WHERE f.business_key = p.company_id)")
    return int(left), int(right), int(matched)
