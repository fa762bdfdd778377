-- The matching cascade. Each step pairs the CRM and ERP rows still open after the earlier
-- steps; a pair is accepted only when each side has exactly one possible partner at that
-- step. Every row in a pair that is not accepted is ambiguous: it leaves the cascade (a
-- later, weaker step must not overrule conflicting stronger evidence) and waits for a human.
--   1 link          ERP crm_company_id = CRM id, or CRM erp_customer_number = ERP number
--   2 tax_id        same normalised tax id
--   3 deal_order    the ERP customer's orders carry CRM deal ids of the company's closed-won deals,
--                   or an unlinked order of it is the one exact match of such a deal (amount,
--                   currency, dated within the match window): the two systems' own transactions
--                   say they are the same customer
--   4 name_country  same normalised name and same country, unless both carry different tax ids
--   5 name_only     same normalised name, countries differ (a mistyped country: reported by
--                   reconciliation as country_mismatch), unless both carry different tax ids
-- Reconciliation (assets/reconcile/identity.py) and publishing use these pairs: one definition
-- of "the same customer" in the whole platform.
with crm as (select * from {{ ref('int_crm_customer_pool') }}),
erp as (select * from {{ ref('int_erp_customer_pool') }}),
orders as (
    select * from {{ ref('stg_erp_sales_orders') }} where coalesce(status, '') <> 'cancelled'
),
won as (
    select * from {{ ref('stg_crm_deals') }}
    where deal_stage = 'closedwon' and not is_archived and crm_company_id is not null
),
-- an unlinked order with exactly one closed-won deal of the same amount and currency, dated in
-- the window after its close (and that deal has no linked order and exactly this one match):
-- the clerk's order for that deal, typed without the deal id
unlinked_matches as (
    select d.deal_id, o.order_number, d.crm_company_id, o.erp_customer_number
    from orders as o
    join won as d
      on o.currency = d.currency
     and abs(o.total_amount - d.amount) <= 0.01
     and o.order_date between cast(d.closed_at as date) - 1
                          and cast(d.closed_at as date) + {{ var('match_window_days') }}
    where o.crm_deal_id is null
      and not exists (select 1 from orders as l where l.crm_deal_id = d.deal_id)
),
deal_orders as (
    select distinct d.crm_company_id, o.erp_customer_number
    from orders as o
    join won as d on d.deal_id = o.crm_deal_id
    where o.erp_customer_number is not null
    union
    select crm_company_id, erp_customer_number from unlinked_matches as m
    where erp_customer_number is not null
      and (select count(*) from unlinked_matches as x where x.deal_id = m.deal_id) = 1
      and (select count(*) from unlinked_matches as x where x.order_number = m.order_number) = 1
),

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
step_order as (
    select c.crm_company_id, e.erp_customer_number, 3 as match_step, 'deal_order' as match_method,
           count(*) over (partition by c.crm_company_id) as crm_partners,
           count(*) over (partition by e.erp_customer_number) as erp_partners
    from crm_after_tax as c
    join deal_orders as x on x.crm_company_id = c.crm_company_id
    join erp_after_tax as e on e.erp_customer_number = x.erp_customer_number
),

crm_after_order as (
    select * from crm_after_tax as c
    where not exists (select 1 from step_order as s where s.crm_company_id = c.crm_company_id)
),
erp_after_order as (
    select * from erp_after_tax as e
    where not exists (select 1 from step_order as s where s.erp_customer_number = e.erp_customer_number)
),
step_name as (
    select c.crm_company_id, e.erp_customer_number, 4 as match_step, 'name_country' as match_method,
           count(*) over (partition by c.crm_company_id) as crm_partners,
           count(*) over (partition by e.erp_customer_number) as erp_partners
    from crm_after_order as c
    join erp_after_order as e
      on c.name_key = e.name_key
     and c.country = e.country
    where c.tax_key is null or e.tax_key is null or c.tax_key = e.tax_key
),

crm_after_name as (
    select * from crm_after_order as c
    where not exists (select 1 from step_name as s where s.crm_company_id = c.crm_company_id)
),
erp_after_name as (
    select * from erp_after_order as e
    where not exists (select 1 from step_name as s where s.erp_customer_number = e.erp_customer_number)
),
step_name_only as (
    select c.crm_company_id, e.erp_customer_number, 5 as match_step, 'name_only' as match_method,
           count(*) over (partition by c.crm_company_id) as crm_partners,
           count(*) over (partition by e.erp_customer_number) as erp_partners
    from crm_after_name as c
    join erp_after_name as e on c.name_key = e.name_key
    where c.name_key <> '' and (c.tax_key is null or e.tax_key is null or c.tax_key = e.tax_key)
),

candidates as (
    select * from step_link
    union all
    select * from step_tax
    union all
    select * from step_order
    union all
    select * from step_name
    union all
    select * from step_name_only
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
