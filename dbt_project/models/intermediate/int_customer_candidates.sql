-- The matching cascade. Each step pairs the CRM and ERP rows still open after the earlier
-- steps; a pair is accepted only when each side has exactly one possible partner at that
-- step. Every row in a pair that is not accepted is ambiguous: it leaves the cascade (a
-- later, weaker step must not overrule conflicting stronger evidence) and waits for a human.
--   1 link          ERP crm_company_id = CRM id, or CRM erp_customer_number = ERP number
--   2 tax_id        same normalised tax id
--   3 name_country  same normalised name and same country, unless both carry different tax ids
with crm as (select * from {{ ref('int_crm_customer_pool') }}),
erp as (select * from {{ ref('int_erp_customer_pool') }}),

link_pairs as (
    select distinct c.crm_company_id, e.erp_customer_number
    from crm as c
    join erp as e
      on e.linked_crm_company_id = c.crm_company_id
      or c.linked_erp_customer_number = e.erp_customer_number
),
step_link as (
    select crm_company_id, erp_customer_number, 1 as match_step, 'link' as match_method,
           count(*) over (partition by crm_company_id) as crm_partners,
           count(*) over (partition by erp_customer_number) as erp_partners
    from link_pairs
),

crm_after_link as (
    select * from crm as c
    where not exists (select 1 from step_link as s where s.crm_company_id = c.crm_company_id)
),
erp_after_link as (
    select * from erp as e
    where not exists (select 1 from step_link as s where s.erp_customer_number = e.erp_customer_number)
),
step_tax as (
    select c.crm_company_id, e.erp_customer_number, 2 as match_step, 'tax_id' as match_method,
           count(*) over (partition by c.crm_company_id) as crm_partners,
           count(*) over (partition by e.erp_customer_number) as erp_partners
    from crm_after_link as c
    join erp_after_link as e on c.tax_key = e.tax_key
),

crm_after_tax as (
    select * from crm_after_link as c
    where not exists (select 1 from step_tax as s where s.crm_company_id = c.crm_company_id)
),
erp_after_tax as (
    select * from erp_after_link as e
    where not exists (select 1 from step_tax as s where s.erp_customer_number = e.erp_customer_number)
),
step_name as (
    select c.crm_company_id, e.erp_customer_number, 3 as match_step, 'name_country' as match_method,
           count(*) over (partition by c.crm_company_id) as crm_partners,
           count(*) over (partition by e.erp_customer_number) as erp_partners
    from crm_after_tax as c
    join erp_after_tax as e
      on c.name_key = e.name_key
     and c.country = e.country
    where c.tax_key is null or e.tax_key is null or c.tax_key = e.tax_key
),

candidates as (
    select * from step_link
    union all
    select * from step_tax
    union all
    select * from step_name
)
select
    crm_company_id,
    erp_customer_number,
    match_step,
    match_method,
    crm_partners,
    erp_partners,
    (crm_partners = 1 and erp_partners = 1) as is_accepted
from candidates
