-- runs after publish and reconcile (with the other ROI marts)
{{ config(tags=['roi']) }}
{#- The two periods the ROI compares, of equal length: 'current' from go-live to the business
    clock (the latest business day loaded), 'baseline' as many days just before go-live (shorter
    only when the history is: from the first business day loaded). One row each, with its window.
    The days loaded come from raw's version log, which keeps every day a record changed —
    staging keeps only each record's latest version, whose day moves on when it changes again. -#}
with days_loaded as (
    {%- for obj in ['crm_deals', 'crm_companies', 'crm_contacts'] %}
    select min({{ to_date('_partition') }}) as first_day, max({{ to_date('_partition') }}) as last_day
    from {{ source('raw_versions', obj) }}
    {%- if not loop.last %}
    union all{% endif %}
    {%- endfor %}
),

clock as (
    select max(last_day) as as_of_date, min(first_day) as first_date from days_loaded
),

bounds as (
    select
        {{ golive_date() }}                                                           as current_start,
        as_of_date                                                                    as current_end,
        greatest(first_date, cast({{ golive_date() }} - cast(as_of_date - {{ golive_date() }} + 1 as integer) as date))
                                                                                      as baseline_start,
        cast({{ golive_date() }} - 1 as date)                                         as baseline_end,
        cast(as_of_date + interval '1 day' as timestamp)                              as as_of_at
    from clock
)

select 'baseline' as period, baseline_start as period_start, baseline_end as period_end,
       baseline_end - baseline_start + 1 as days, as_of_at
from bounds
union all
select 'current', current_start, current_end, current_end - current_start + 1, as_of_at
from bounds
