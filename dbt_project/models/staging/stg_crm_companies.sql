select
    id                                        as crm_company_id,
    nullif(trim(name), '')                    as company_name,
    nullif(lower(trim(domain)), '')           as domain,
    {{ trimmed_upper('country') }}            as country,
    nullif(trim(industry), '')                as industry,
    nullif(lower(trim(lifecyclestage)), '')   as lifecyclestage,
    nullif(trim(tax_id), '')                  as tax_id,
    nullif(trim(erp_customer_number), '')     as erp_customer_number,
    {{ to_decimal('ar_balance') }}            as ar_balance,
    {{ to_decimal('ar_overdue_amount') }}     as ar_overdue_amount,
    {{ to_date('last_payment_date') }}        as last_payment_date,
    {{ to_bool('archived') }}                 as is_archived,
    {{ to_timestamp('archived_at') }}         as archived_at,
    {{ to_timestamp('created_at') }}          as created_at,
    {{ to_timestamp('updated_at') }}          as updated_at,
    _partition                                as source_partition
from {{ source('validated', 'crm_companies') }}
