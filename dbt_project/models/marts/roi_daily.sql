-- runs after publish and reconcile (they write the ledger and the breaks it reads)
{{ config(tags=['roi']) }}
{#- One row per business day: the ROI measures of that day (see _roi.yml for definitions). -#}
with recursive
q2c as (select * from {{ ref('fct_quote_to_cash') }}),
runs as (select * from {{ ref('fct_sync_runs') }}),
breaks as (select * from {{ ref('fct_recon_breaks') }}),

gates as (
    select * from (
        select
            {{ to_date('partition') }} as business_date, rows_in, rows_quarantined,
            row_number() over (partition by contract, object, direction, partition
                               order by evaluated_at desc, run_id desc) as rn
        from {{ source('quality', 'gate_results') }}
        -- the day's batches only: not publish's read-back of its own writes, not a replay's re-read
        -- (null: written before the column, labelled by migration 3; a warehouse not gated since
        -- the column came has none yet)
        {%- set gate_columns = adapter.get_columns_in_relation(source('quality', 'gate_results'))
                               | map(attribute='name') | map('lower') | list if execute else [] %}
        {%- if 'batch_kind' in gate_columns %}
        where coalesce(batch_kind, 'day') = 'day'
        {%- endif %}
    ) g
    where rn = 1
),

bounds as (
    select min(d) as first_day, max(d) as last_day from (
        select closed_date as d from q2c
        union all select business_date from runs
        union all select business_date from gates
        union all select break_date from breaks
    ) x
),

spine (day) as (
    select first_day from bounds where first_day is not null
    union all
    select cast(day + interval '1 day' as date) from spine, bounds where day < bounds.last_day
),

deal_day as (
    select
        closed_date                                            as day,
        count(*)                                               as closed_won_deals,
        count(order_number)                                    as orders,
        sum({{ flag('is_touchless') }})                        as touchless_orders,
        sum({{ flag("created_by = 'manual'") }})               as manual_orders,
        sum(manual_touches)                                    as manual_touches,
        sum(amount_reporting)                                  as closed_won_amount,
        sum(revenue_leakage)                                   as revenue_leakage,
        {{ p(0.5, 'deal_to_order_hours') }}                    as deal_to_order_hours_p50,
        {{ p(0.9, 'deal_to_order_hours') }}                    as deal_to_order_hours_p90,
        {{ p(0.5, 'quote_to_cash_days') }}                     as quote_to_cash_days_p50
    from q2c
    group by closed_date
),

run_day as (
    select
        business_date                                          as day,
        sum({{ flag('is_first_try') }})                        as asset_partitions,
        sum({{ flag('first_attempt_success') }})               as first_attempt_successes
    from runs
    where business_date is not null
    group by business_date
),

gate_day as (
    select business_date as day, sum(rows_in) as rows_gated, sum(rows_quarantined) as quarantined_rows
    from gates
    group by business_date
),

break_day as (
    select break_date as day, sum(dollars_at_risk) as dollars_at_risk, sum(dollars_recovered) as dollars_recovered
    from breaks
    group by break_date
),

slo as (
    select
        s.day,
        sum({{ flag("q.order_sla_status = 'met'") }})          as sla_met_28d,
        sum({{ flag("q.order_sla_status in ('met', 'breached')") }}) as sla_due_28d
    from spine s
    join q2c q on q.closed_date <= s.day and q.closed_date > cast(s.day - interval '28 days' as date)
    group by s.day
)

select
    s.day,
    coalesce(pr.period, 'earlier')                                               as period,
    coalesce(d.closed_won_deals, 0)                                              as closed_won_deals,
    coalesce(d.orders, 0)                                                        as orders,
    coalesce(d.touchless_orders, 0)                                              as touchless_orders,
    coalesce(d.manual_orders, 0)                                                 as manual_orders,
    d.deal_to_order_hours_p50,
    d.deal_to_order_hours_p90,
    d.quote_to_cash_days_p50,
    {{ safe_div('r.first_attempt_successes', 'r.asset_partitions') }}            as first_attempt_success_rate,
    {{ safe_div('d.touchless_orders', 'd.orders') }}                             as touchless_rate,
    coalesce(g.rows_gated, 0)                                                    as rows_gated,
    coalesce(g.quarantined_rows, 0)                                              as quarantined_rows,
    1000 * {{ safe_div('g.quarantined_rows', 'g.rows_gated') }}                  as error_rate_per_1000,
    coalesce(d.closed_won_amount, 0)                                             as closed_won_amount,
    coalesce(d.revenue_leakage, 0)                                               as revenue_leakage,
    coalesce(b.dollars_at_risk, 0)                                               as dollars_at_risk,
    coalesce(b.dollars_recovered, 0)                                             as dollars_recovered,
    coalesce(d.manual_touches, 0)                                                as manual_touches,
    100 * {{ safe_div('d.manual_touches', 'd.orders') }}                         as manual_touches_per_100,
    coalesce(d.touchless_orders, 0) * {{ var('minutes_per_manual_order') }} / 60.0 as hours_saved_estimate,
    coalesce(sl.sla_met_28d, 0)                                                  as order_sla_met_28d,
    coalesce(sl.sla_due_28d, 0)                                                  as order_sla_due_28d,
    {{ safe_div('sl.sla_met_28d', 'sl.sla_due_28d') }}                           as order_slo_attainment_28d,
    {{ var('order_slo_objective') }}                                             as order_slo_objective,
    (1 - {{ safe_div('sl.sla_met_28d', 'sl.sla_due_28d') }}) / (1 - {{ var('order_slo_objective') }})
                                                                                 as error_budget_burn_28d,
    {{ safe_div('sl.sla_met_28d', 'sl.sla_due_28d') }} >= {{ var('order_slo_objective') }}
                                                                                 as order_slo_met
from spine s
left join deal_day d on d.day = s.day
left join run_day r on r.day = s.day
left join gate_day g on g.day = s.day
left join break_day b on b.day = s.day
left join slo sl on sl.day = s.day
left join {{ ref('roi_periods') }} pr on s.day between pr.period_start and pr.period_end
