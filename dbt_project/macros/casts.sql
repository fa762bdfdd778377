{#- Every warehouse column is TEXT. These casts work the same on DuckDB and PostgreSQL. -#}

{% macro to_decimal(col) -%}
    cast(nullif(trim({{ col }}), '') as decimal(18, 2))
{%- endmacro %}

{% macro to_date(col) -%}
    cast(substr(nullif(trim({{ col }}), ''), 1, 10) as date)
{%- endmacro %}

{#- ISO timestamps end in 'Z' (UTC): '2026-10-01T10:00:00.000Z' or '...00.000000Z'.
    PostgreSQL would ignore the zone silently and DuckDB may reject it, so drop the 'Z'
    and the 'T' and cast to a naive TIMESTAMP meaning UTC. -#}
{% macro to_timestamp(col) -%}
    cast(replace(replace(nullif(trim({{ col }}), ''), 'T', ' '), 'Z', '') as timestamp)
{%- endmacro %}

{% macro to_bool(col) -%}
    (lower(coalesce(trim({{ col }}), '')) in ('true', 't', '1', 'yes'))
{%- endmacro %}

{#- The matching key for names: lower case; dots and apostrophes dropped ('S.A.' -> 'sa'),
    other punctuation to spaces; legal-form words (inc, llc, gmbh, ltd, bv, sa, ab, corp…)
    removed wherever they stand (two passes, as adjacent words share a space); spaces
    collapsed. 'BLUE HARBOR K2J9 INC.' and 'Blue Harbor K2J9 Inc' both give 'blue harbor k2j9'. -#}
{% macro normalize_name(col) -%}
    {%- set legal = "(inc|incorporated|llc|gmbh|ltd|limited|bv|sa|ab|corp|corporation|co|plc|ag|nv|srl|oy)" -%}
    nullif(trim(regexp_replace(
        regexp_replace(regexp_replace(
            regexp_replace(regexp_replace(' ' || lower(coalesce({{ col }}, '')) || ' ', '[.'']', '', 'g'),
                           '[^a-z0-9]+', ' ', 'g'),
            ' {{ legal }} ', ' ', 'g'), ' {{ legal }} ', ' ', 'g'),
        ' +', ' ', 'g')), '')
{%- endmacro %}

{#- Tax ids compared as upper-case letters and digits only ('fr 38-270' = 'FR38270'). -#}
{% macro normalize_tax_id(col) -%}
    nullif(regexp_replace(upper(coalesce({{ col }}, '')), '[^A-Z0-9]', '', 'g'), '')
{%- endmacro %}

{% macro trimmed_upper(col) -%}
    nullif(upper(trim({{ col }})), '')
{%- endmacro %}

{% macro hash_key(expr) -%}
    md5({{ expr }})
{%- endmacro %}
