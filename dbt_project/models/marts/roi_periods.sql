-- runs after publish and reconcile (with the other ROI marts)
{{ config(tags=['roi']) }}
{#- The two periods the ROI compares, of equal length: 'current' from go-live to the business
    clock (the latest business day whose deals were loaded), 'baseline' as many days just before
    go-live (shorter only when the history is). One row each, with its window. -#}
with clock as (
    select {{ to_date('max(source_partition)') }} as as_of_date,
           {{ to_date('min(source_partition)') }} as first_date
    from {{ ref('stg_crm_deals') }}
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
