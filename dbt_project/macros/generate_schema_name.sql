{#- Models land in the schema named by +schema (staging, intermediate, marts) exactly,
    not <target_schema>_<custom>: analysts and the spec query marts.dim_customer. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
