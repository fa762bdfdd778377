select
    customer_number                           as erp_customer_number,
    nullif(trim(name), '')                    as customer_name,
    nullif(trim(tax_id), '')                  as tax_id,
    {{ trimmed_upper('country') }}            as country,
    {{ trimmed_upper('currency') }}           as currency,
    nullif(trim(crm_company_id), '')          as crm_company_id,
    {{ to_decimal('credit_limit') }}          as credit_limit,
    {{ to_timestamp('created_at') }}          as created_at,
    {{ to_timestamp('updated_at') }}          as updated_at,
    _partition                                as source_partition
from {{ source('validated', 'erp_customers') }}
