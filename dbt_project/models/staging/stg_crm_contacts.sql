select
    id                                        as crm_contact_id,
    nullif(lower(trim(email)), '')            as email,
    nullif(trim(firstname), '')               as first_name,
    nullif(trim(lastname), '')                as last_name,
    nullif(trim(phone), '')                   as phone,
    nullif(trim(associatedcompanyid), '')     as crm_company_id,
    {{ to_bool('archived') }}                 as is_archived,
    {{ to_timestamp('archived_at') }}         as archived_at,
    {{ to_timestamp('created_at') }}          as created_at,
    {{ to_timestamp('updated_at') }}          as updated_at,
    _partition                                as source_partition
from {{ source('validated', 'crm_contacts') }}
