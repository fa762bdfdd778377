{{ config(meta={'dagster': {'ref': {'name': 'dim_customer'}}}) }}
-- Every ERP customer and every CRM customer company has a golden row.
select 'erp' as side, e.erp_customer_number as business_key
from {{ ref('stg_erp_customers') }} as e
where not exists (select 1 from {{ ref('dim_customer') }} as d where d.erp_customer_number = e.erp_customer_number)
union all
select 'crm' as side, c.crm_company_id as business_key
from {{ ref('int_crm_customer_pool') }} as c
where not exists (select 1 from {{ ref('dim_customer') }} as d where d.crm_company_id = c.crm_company_id)
