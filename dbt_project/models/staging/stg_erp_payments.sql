select
    payment_id,
    nullif(trim(invoice_number), '')          as invoice_number,
    {{ to_decimal('amount') }}                as amount,
    {{ trimmed_upper('currency') }}           as currency,
    {{ to_timestamp('received_at') }}         as received_at,
    nullif(lower(trim(method)), '')           as method,
    {{ to_timestamp('created_at') }}          as created_at,
    {{ to_timestamp('updated_at') }}          as updated_at,
    _partition                                as source_partition
from {{ source('validated', 'erp_payments') }}
