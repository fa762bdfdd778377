-- runs after publish and reconcile (they write the ledger and the breaks it reads)
{{ config(tags=['roi']) }}
{#- The ROI measures per period: 'baseline' (before go-live, manual) beside 'current' (after). -#}
with q2c as (select * from {{ ref('fct_quote_to_cash') }}),
runs as (select * from {{ ref('fct_sync_runs') }}),
breaks as (select * from {{ ref('fct_recon_breaks') }}),
daily as (select * from {{ ref('roi_daily') }}),

periods as (
    select period, min(day) as period_start, max(day) as period_end, count(*) as days,
           sum(rows_gated) as rows_gated, sum(quarantined_rows) as quarantined_rows
    from daily
    group by period
),

deal_p as (
    select
        period,
        count(*)                                               as closed_won_deals,
        count(order_number)                                    as orders,
        sum({{ flag('is_touchless') }})                        as touchless_orders,
        sum({{ flag("created_by = 'manual'") }})               as manual_orders,
        sum(manual_touches)                                    as manual_touches,
        sum(amount_reporting)                                  as closed_won_amount,
        sum(revenue_leakage)                                   as revenue_leakage,
        sum({{ flag("order_sla_status = 'met'") }})            as order_sla_met,
        sum({{ flag("order_sla_status in ('met', 'breached')") }}) as order_sla_due,
        {{ p(0.5, 'deal_to_order_hours') }}                    as deal_to_order_hours_p50,
        {{ p(0.9, 'deal_to_order_hours') }}                    as deal_to_order_hours_p90,
        {{ p(0.5, 'quote_to_cash_days') }}                     as quote_to_cash_days_p50
    from q2c
    group by period
),

run_p as (
    select period, sum({{ flag('is_first_try') }}) as asset_partitions,
           sum({{ flag('first_attempt_success') }}) as first_attempt_successes
    from runs
    where period is not null
    group by period
),

break_p as (
    select period, sum(dollars_at_risk) as dollars_at_risk, sum(dollars_recovered) as dollars_recovered
    from breaks
    group by period
)

select
    p.period,
    p.period_start,
    p.period_end,
    p.days,
    coalesce(d.closed_won_deals, 0)                                      as closed_won_deals,
    coalesce(d.orders, 0)                                                as orders,
    coalesce(d.touchless_orders, 0)                                      as touchless_orders,
    coalesce(d.manual_orders, 0)                                         as manual_orders,
    d.deal_to_order_hours_p50,
    d.deal_to_order_hours_p90,
    d.quote_to_cash_days_p50,
    {{ safe_div('r.first_attempt_successes', 'r.asset_partitions') }}    as first_attempt_success_rate,
    {{ safe_div('d.touchless_orders', 'd.orders') }}                     as touchless_rate,
    p.rows_gated,
    p.quarantined_rows,
    1000 * {{ safe_div('p.quarantined_rows', 'p.rows_gated') }}          as error_rate_per_1000,
    coalesce(d.closed_won_amount, 0)                                     as closed_won_amount,
    coalesce(d.revenue_leakage, 0)                                       as revenue_leakage,
    coalesce(b.dollars_at_risk, 0)                                       as dollars_at_risk,
    coalesce(b.dollars_recovered, 0)                                     as dollars_recovered,
    coalesce(d.manual_touches, 0)                                        as manual_touches,
    100 * {{ safe_div('d.manual_touches', 'd.closed_won_deals') }}       as manual_touches_per_100,
    coalesce(d.touchless_orders, 0) * {{ var('minutes_per_manual_order') }} / 60.0 as hours_saved_estimate,
    'ESTIMATE: touchless orders x {{ var("minutes_per_manual_order") }} clerk minutes per manual order (var minutes_per_manual_order)'
                                                                         as hours_saved_basis,
    coalesce(d.order_sla_met, 0)                                         as order_sla_met,
    coalesce(d.order_sla_due, 0)                                         as order_sla_due,
    {{ safe_div('d.order_sla_met', 'd.order_sla_due') }}                 as order_slo_attainment,
    {{ var('order_slo_objective') }}                                     as order_slo_objective,
    (1 - {{ safe_div('d.order_sla_met', 'd.order_sla_due') }}) / (1 - {{ var('order_slo_objective') }})
                                                                         as error_budget_burn,
    {{ golive_date() }}                                                  as golive_date,
    {{ reporting_currency() }}                                           as reporting_currency
from periods p
left join deal_p d on d.period = p.period
left join run_p r on r.period = p.period
left join break_p b on b.period = p.period
