-- The ERP side of the golden customer: every ERP customer, with its matching keys.
select
    erp_customer_number,
    customer_name,
    country,
    tax_id,
    crm_company_id                          as linked_crm_company_id,
    {{ normalize_name('customer_name') }}   as name_key,
    {{ normalize_tax_id('tax_id') }}        as tax_key
from {{ ref('stg_erp_customers') }}
