"""Which CRM company and which ERP customer are the same customer — for the reconciliations.

There is one definition of "the same customer" in the platform: the golden customer's matching
cascade (dbt: int_customer_candidates → marts.dim_customer: link → tax id → the customer's
orders carry the company's deal ids → name and country → name alone). Publishing takes its
crosswalk from it (assets/publish/plan.py), and so does reconciliation, here.

The golden customer is built from the current state; a reconciliation as of day D keeps the
pairs whose two records exist as of D. Records the golden customer has not seen yet (an ERP
customer Trueup created tonight, after dbt ran) are paired by their explicit link — the
cascade's first step — when neither side is already paired. Before dbt has ever run, the
explicit links are all there is.
"""
from __future__ import annotations

from .rules import RuleContext


def customer_pairs(ctx: RuleContext, companies: str, customers: str) -> None:
    """Create temp tables
    - `id_pair (company_id, customer_number, method)`: the pairs among the given as-of tables
      (`companies` with columns id, erp_customer_number; `customers` with customer_number,
      crm_company_id);
    - `id_ambiguous (side, id)`: records the golden customer could not match because more than
      one partner was possible ('crm' company ids, 'erp' customer numbers) — a person decides."""
    golden = ctx.table_exists("marts", "dim_customer")
    if golden:
        ctx.temp("id_golden", "SELECT crm_company_id AS company_id, erp_customer_number AS customer_number, "
                              "match_method AS method FROM marts.dim_customer "
                              "WHERE crm_company_id IS NOT NULL AND erp_customer_number IS NOT NULL")
        ctx.temp("id_ambiguous", "SELECT 'crm' AS side, crm_company_id AS id FROM marts.dim_customer "
                                 "WHERE match_method = 'ambiguous' AND crm_company_id IS NOT NULL UNION "
                                 "SELECT 'erp', erp_customer_number FROM marts.dim_customer "
                                 "WHERE match_method = 'ambiguous' AND erp_customer_number IS NOT NULL")
    else:
        ctx.temp("id_golden", "SELECT CAST(NULL AS TEXT) AS company_id, CAST(NULL AS TEXT) AS customer_number, "
                              "CAST(NULL AS TEXT) AS method WHERE 1 = 0")
        ctx.temp("id_ambiguous", "SELECT CAST(NULL AS TEXT) AS side, CAST(NULL AS TEXT) AS id WHERE 1 = 0")
    ctx.temp("id_pair", f"SELECT g.company_id, g.customer_number, g.method FROM id_golden g "
                        f"JOIN {companies} c ON c.id = g.company_id JOIN {customers} u ON u.customer_number = "
                        "g.customer_number")
    # explicit links among records the golden customer has not paired (new tonight, or no dbt yet)
    ctx.exec(f"INSERT INTO id_pair SELECT DISTINCT c.id, u.customer_number, 'link' FROM {companies} c "
             f"JOIN {customers} u ON u.crm_company_id = c.id OR c.erp_customer_number = u.customer_number "
             "WHERE NOT EXISTS (SELECT 1 FROM id_golden g WHERE g.company_id = c.id) "
             "AND NOT EXISTS (SELECT 1 FROM id_golden g WHERE g.customer_number = u.customer_number) "
             "AND NOT EXISTS (SELECT 1 FROM id_ambiguous a WHERE a.side = 'crm' AND a.id = c.id) "
             "AND NOT EXISTS (SELECT 1 FROM id_ambiguous a WHERE a.side = 'erp' AND a.id = u.customer_number)")
