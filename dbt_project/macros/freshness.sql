{#- When raw last took in what its source had, for the raw tables' source freshness
    (_sources.yml, source raw_versions): the newest version landed (_loaded_at), or the newest
    load that found the source had nothing newer — a quiet night (no deal changed) is not stale
    data. Database and CRM objects: their raw/<object> asset's last successful step
    (ops.sync_runs); the ERP's file exports: the last export verified and loaded
    (ops.export_loads). -#}
{% macro raw_loaded_at(object_name) -%}
select max(loaded_at) from (
    select max(_loaded_at) as loaded_at from {{ this }}
    union all
    {% if object_name in ('erp_invoices', 'erp_payments') -%}
    select max(checked_at) from ops.export_loads where status = 'loaded'
    {%- else -%}
    select max(finished_at) from ops.sync_runs where asset = 'raw/{{ object_name }}' and status = 'success'
    {%- endif %}
) loads
{%- endmacro %}
