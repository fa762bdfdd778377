select
    id                                        as deal_id,
    nullif(trim(dealname), '')                as deal_name,
    nullif(trim(company_id), '')              as crm_company_id,
    {{ to_decimal('amount') }}                as amount,
    {{ trimmed_upper('deal_currency_code') }} as currency,
    nullif(lower(trim(dealstage)), '')        as deal_stage,
    nullif(trim(pipeline), '')                as pipeline,
    {{ to_timestamp('closedate') }}           as closed_at,
    nullif(trim(erp_order_number), '')        as erp_order_number,
    {{ to_bool('archived') }}                 as is_archived,
    {{ to_timestamp('archived_at') }}         as archived_at,
    {{ to_timestamp('created_at') }}          as created_at,
    {{ to_timestamp('updated_at') }}          as updated_at,
    _partition                                as source_partition
from {{ source('validated', 'crm_deals') }}
