{#- Helpers for the ROI marts. All work the same on DuckDB and PostgreSQL. -#}

{#- Go-live date (start of the 'current' period): TRUEUP_PUBLISH_FROM if set, else the dbt var
    `publish_from` (the Dagster asset passes settings.publish_from as that var). -#}
{% macro golive_date() -%}
    cast('{{ env_var("TRUEUP_PUBLISH_FROM", var("publish_from")) }}' as date)
{%- endmacro %}

{% macro reporting_currency() -%}
    '{{ var("reporting_currency") | upper }}'
{%- endmacro %}

{#- Seconds between two timestamps (b - a), as a double. -#}
{% macro seconds_between(a, b) -%}
    cast(extract(epoch from {{ b }}) - extract(epoch from {{ a }}) as double precision)
{%- endmacro %}

{% macro hours_between(a, b) -%}
    ({{ seconds_between(a, b) }} / 3600.0)
{%- endmacro %}

{% macro days_between(a, b) -%}
    ({{ seconds_between(a, b) }} / 86400.0)
{%- endmacro %}

{#- Divide, null when the denominator is 0 or null. -#}
{% macro safe_div(num, den) -%}
    (cast({{ num }} as double precision) / nullif(cast({{ den }} as double precision), 0))
{%- endmacro %}

{% macro p(fraction, col) -%}
    percentile_cont({{ fraction }}) within group (order by {{ col }})
{%- endmacro %}

{#- One string field of a JSON document stored as TEXT. -#}
{% macro json_text(col, key) -%}
    {%- if target.type == 'duckdb' -%}
    json_extract_string({{ col }}, '$.{{ key }}')
    {%- else -%}
    (cast({{ col }} as json) ->> '{{ key }}')
    {%- endif -%}
{%- endmacro %}

{% macro flag(cond) -%}
    (case when {{ cond }} then 1 else 0 end)
{%- endmacro %}

{#- A source table that may not exist yet (ops.sor_writes and recon.* are created by publish and
    reconcile, which run after dbt in the nightly job on a fresh warehouse): the table when it
    exists, else an empty relation with the columns the ROI marts read. -#}
{% macro optional_source(src, tbl, columns) -%}
    {%- set rel = source(src, tbl) -%}
    {%- set found = adapter.get_relation(rel.database, rel.schema, rel.identifier) if execute else rel -%}
    {%- if found -%}{{ rel }}{%- else -%}
    (select {% for name, type in columns.items() %}cast(null as {{ type }}) as {{ name }}{{ ", " if not loop.last }}{% endfor %} where 1 = 0)
    {%- endif -%}
{%- endmacro %}

{% macro src_sor_writes() -%}
    {{ optional_source('ops', 'sor_writes', {'business_key': 'varchar', 'payload': 'varchar', 'updated_at': 'timestamp',
        'target_system': 'varchar', 'target_object': 'varchar', 'state': 'varchar', 'hold_reason': 'varchar',
        'approved_by': 'varchar', 'business_at': 'timestamp', 'business_date': 'varchar'}) }}
{%- endmacro %}

{#- recon.breaks with counted_at_risk: money at risk once per root cause (the view is
    connectors/warehouse_schema's, the one definition of that count) -#}
{% macro src_recon_breaks() -%}
    {{ optional_source('recon', 'breaks_counted', {'break_id': 'varchar', 'recon_name': 'varchar', 'break_type': 'varchar',
        'business_key': 'varchar', 'left_system': 'varchar', 'right_system': 'varchar', 'left_amount': 'decimal(18,2)',
        'right_amount': 'decimal(18,2)', 'amount_at_risk': 'decimal(18,2)', 'currency': 'varchar',
        'first_seen_at': 'timestamp', 'last_seen_at': 'timestamp', 'status': 'varchar', 'resolved_at': 'timestamp',
        'run_id': 'varchar', 'problem_date': 'date', 'category': 'varchar', 'owner_system': 'varchar',
        'reason': 'varchar', 'chain_key': 'varchar', 'amount_pending': 'decimal(18,2)',
        'counted_at_risk': 'decimal(18,2)', 'first_seen_as_of': 'date', 'last_seen_as_of': 'date',
        'resolved_as_of': 'date'}) }}
{%- endmacro %}

{% macro src_recon_runs() -%}
    {{ optional_source('recon', 'runs', {'run_id': 'varchar', 'recon_name': 'varchar', 'as_of': 'date'}) }}
{%- endmacro %}

{#- One row per (object, record key, business day) that the sources changed: distinct source
    records landed per day, from raw's version log, leaving out the platform's own writes read
    back after publishing (they are not source activity). -#}
{% macro source_record_days() -%}
    {%- set keys = {'crm_companies': 'id', 'crm_contacts': 'id', 'crm_deals': 'id',
                    'erp_customers': 'customer_number', 'erp_sales_orders': 'order_number',
                    'erp_invoices': 'invoice_number', 'erp_payments': 'payment_id'} -%}
    {%- for obj, key in keys.items() %}
    select distinct '{{ obj }}' as object, cast({{ key }} as {{ dbt.type_string() }}) as record_key,
           {{ to_date('_partition') }} as business_date
    from {{ source('raw_versions', obj) }}
    where coalesce(_source, '') not like '%read back after publish%'
    {%- if not loop.last %}
    union all{% endif %}
    {%- endfor %}
{%- endmacro %}

{#- Quarantined source records (inbound contracts; an outbound quarantine holds the platform's own
    intended write): one row per (object, record key, business day), every day a record failed on —
    the quarantine itself keeps only the latest. -#}
{% macro quarantined_record_days() -%}
    select distinct object, business_key as record_key, {{ to_date('partition') }} as business_date
    from {{ source('quality', 'quarantine_days') }}
    where contract not like '%.outbound'
{%- endmacro %}
