-- The golden customer: one row per real customer (see _marts.yml for the rules).
with crm as (select * from {{ ref('int_crm_customer_pool') }}),
erp as (select * from {{ ref('int_erp_customer_pool') }}),
candidates as (select * from {{ ref('int_customer_candidates') }}),

accepted as (
    select crm_company_id, erp_customer_number, match_method
    from candidates where is_accepted
),
crm_status as (
    select c.crm_company_id,
           max(a.erp_customer_number) as erp_customer_number,
           max(a.match_method) as accepted_method,
           count(k.crm_company_id) as candidate_pairs
    from crm as c
    left join accepted as a on a.crm_company_id = c.crm_company_id
    left join candidates as k on k.crm_company_id = c.crm_company_id
    group by c.crm_company_id
),
erp_status as (
    select e.erp_customer_number,
           count(k.erp_customer_number) as candidate_pairs
    from erp as e
    left join candidates as k on k.erp_customer_number = e.erp_customer_number
    where not exists (select 1 from accepted as a where a.erp_customer_number = e.erp_customer_number)
    group by e.erp_customer_number
),

crm_rows as (
    -- every CRM customer company: matched (with its ERP partner) or one-sided
    select
        {{ hash_key("'crm:' || c.crm_company_id") }}                   as customer_key,
        c.crm_company_id,
        s.erp_customer_number,
        coalesce(c.company_name, e.customer_name)                      as name,
        coalesce(c.country, e.country)                                 as country,
        case when s.accepted_method is not null then s.accepted_method
             when s.candidate_pairs > 0 then 'ambiguous'
             else 'crm_only' end                                       as match_method,
        c.company_name                                                 as crm_name,
        e.customer_name                                                as erp_name,
        c.country                                                      as crm_country,
        e.country                                                      as erp_country,
        coalesce(c.tax_id, e.tax_id)                                   as tax_id,
        case when s.accepted_method is null then s.candidate_pairs else 0 end as ambiguous_candidates
    from crm as c
    join crm_status as s on s.crm_company_id = c.crm_company_id
    left join erp as e on e.erp_customer_number = s.erp_customer_number
),
erp_rows as (
    -- ERP customers without an accepted CRM partner
    select
        {{ hash_key("'erp:' || e.erp_customer_number") }}              as customer_key,
        cast(null as {{ dbt.type_string() }})                          as crm_company_id,
        e.erp_customer_number,
        e.customer_name                                                as name,
        e.country,
        case when s.candidate_pairs > 0 then 'ambiguous' else 'erp_only' end as match_method,
        cast(null as {{ dbt.type_string() }})                          as crm_name,
        e.customer_name                                                as erp_name,
        cast(null as {{ dbt.type_string() }})                          as crm_country,
        e.country                                                      as erp_country,
        e.tax_id,
        s.candidate_pairs                                              as ambiguous_candidates
    from erp as e
    join erp_status as s on s.erp_customer_number = e.erp_customer_number
)
select * from crm_rows
union all
select * from erp_rows
