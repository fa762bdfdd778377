select
    invoice_number,
    nullif(trim(order_number), '')            as order_number,
    nullif(trim(customer_number), '')         as erp_customer_number,
    {{ to_date('issue_date') }}               as issue_date,
    {{ to_date('due_date') }}                 as due_date,
    {{ trimmed_upper('currency') }}           as currency,
    {{ to_decimal('amount') }}                as amount,
    nullif(lower(trim(status)), '')           as status,
    {{ to_timestamp('created_at') }}          as created_at,
    {{ to_timestamp('updated_at') }}          as updated_at,
    _partition                                as source_partition
from {{ source('validated', 'erp_invoices') }}
