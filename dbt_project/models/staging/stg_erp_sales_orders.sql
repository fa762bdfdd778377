select
    order_number,
    nullif(trim(customer_number), '')         as erp_customer_number,
    nullif(trim(crm_deal_id), '')             as crm_deal_id,
    {{ to_date('order_date') }}               as order_date,
    {{ trimmed_upper('currency') }}           as currency,
    {{ to_decimal('total_amount') }}          as total_amount,
    nullif(lower(trim(status)), '')           as status,
    nullif(lower(trim(source)), '')           as source,
    {{ to_timestamp('created_at') }}          as created_at,
    {{ to_timestamp('updated_at') }}          as updated_at,
    _partition                                as source_partition
from {{ source('validated', 'erp_sales_orders') }}
