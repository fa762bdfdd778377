-- The CRM side of the golden customer: live (not archived) companies that are customers
-- (lifecyclestage 'customer') or that an ERP customer is explicitly linked to, in either
-- direction (a lifecycle update may lag the ERP account).
with companies as (
    select * from {{ ref('stg_crm_companies') }} where not is_archived
),
erp as (
    select * from {{ ref('stg_erp_customers') }}
)
select
    c.crm_company_id,
    c.company_name,
    c.country,
    c.tax_id,
    c.erp_customer_number                    as linked_erp_customer_number,
    c.lifecyclestage,
    {{ normalize_name('c.company_name') }}   as name_key,
    {{ normalize_tax_id('c.tax_id') }}       as tax_key
from companies as c
where c.lifecyclestage = 'customer'
   or exists (select 1 from erp as e where e.crm_company_id = c.crm_company_id)
   or exists (select 1 from erp as e where e.erp_customer_number = c.erp_customer_number)
