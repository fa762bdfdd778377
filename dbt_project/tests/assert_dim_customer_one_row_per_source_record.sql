{{ config(meta={'dagster': {'ref': {'name': 'dim_customer'}}}) }}
-- No CRM company and no ERP customer appears in two golden rows.
select 'crm' as side, crm_company_id as business_key, count(*) as golden_rows
from {{ ref('dim_customer') }}
where crm_company_id is not null
group by crm_company_id
having count(*) > 1
union all
select 'erp' as side, erp_customer_number as business_key, count(*) as golden_rows
from {{ ref('dim_customer') }}
where erp_customer_number is not null
group by erp_customer_number
having count(*) > 1
