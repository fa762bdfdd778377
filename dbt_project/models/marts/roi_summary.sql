-- runs after publish and reconcile (they write the ledger and the breaks it reads)
{{ config(tags=['roi']) }}
{#- The ROI measures per period: 'baseline' (manual order entry) beside 'current' (after go-live),
    two windows of equal length (roi_periods). Definitions, grain and limits: docs/metrics.md. -#}
with q2c as (select * from {{ ref('fct_quote_to_cash') }} where period in ('baseline', 'current')),
periods as (select * from {{ ref('roi_periods') }}),
runs as (select * from {{ ref('fct_sync_runs') }}),
breaks as (select * from {{ ref('fct_recon_breaks') }}),
daily as (select * from {{ ref('roi_daily') }}),

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
        sum({{ flag('revenue_leakage > 0') }})                 as leaked_deals,
        sum({{ flag('is_pending') }})                          as pending_deals,
        sum(pending_amount)                                    as pending_amount,
        sum({{ flag("order_sla_status = 'met'") }})            as order_sla_met,
        sum({{ flag("order_sla_status in ('met', 'breached')") }}) as order_sla_due,
        {{ p(0.5, 'deal_to_order_hours') }}                    as deal_to_order_hours_p50,
        {{ p(0.9, 'deal_to_order_hours') }}                    as deal_to_order_hours_p90,
        sum({{ flag('followed_30d') }})                        as paid_within_30d_cohort,
        sum({{ flag('followed_30d and paid_within_30d') }})    as paid_within_30d
    from q2c
    group by period
),

-- quote to cash, censoring-aware: over the deals followed at least 60 days, the median days to
-- cash counting a deal not paid within them as longer (null when half of them are not paid)
q2c_cohort as (
    select period, count(*) as cohort,
           {{ p(0.5, "case when paid_at is not null and paid_at <= closed_at + interval '60 days' "
                     "then quote_to_cash_days else 1e9 end") }} as median_days
    from q2c
    where as_of_at >= closed_at + interval '60 days'
    group by period
),

run_p as (
    select p.period, sum({{ flag('r.is_first_try') }}) as asset_partitions,
           sum({{ flag('r.first_attempt_success') }}) as first_attempt_successes
    from runs r
    join periods p on r.business_date between p.period_start and p.period_end
    group by p.period
),

gate_p as (
    select p.period, sum(d.rows_gated) as rows_gated, sum(d.quarantined_rows) as quarantined_rows
    from daily d
    join periods p on d.day between p.period_start and p.period_end
    group by p.period
),

-- distinct source records changed in the window, and those quarantined (inbound contracts)
records_p as (
    select p.period, count(distinct r.object || ':' || r.record_key) as source_records
    from ({{ source_record_days() }}) r
    join periods p on r.business_date between p.period_start and p.period_end
    group by p.period
),
quarantined_p as (
    select p.period, count(distinct q.object || ':' || q.record_key) as quarantined_records
    from ({{ quarantined_record_days() }}) q
    join periods p on q.business_date between p.period_start and p.period_end
    group by p.period
),

break_p as (
    select p.period, sum(b.dollars_at_risk) as dollars_at_risk, sum(b.dollars_recovered) as dollars_recovered
    from breaks b
    join periods p on b.break_date between p.period_start and p.period_end
    group by p.period
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
    case when c.median_days < 1e8 then c.median_days end                 as quote_to_cash_days_p50,
    coalesce(c.cohort, 0)                                                as quote_to_cash_cohort_60d,
    {{ safe_div('d.paid_within_30d', 'd.paid_within_30d_cohort') }}      as paid_within_30d_rate,
    coalesce(d.paid_within_30d_cohort, 0)                                as paid_within_30d_cohort,
    {{ safe_div('r.first_attempt_successes', 'r.asset_partitions') }}    as first_attempt_success_rate,
    {{ safe_div('d.touchless_orders', 'd.orders') }}                     as touchless_rate,
    coalesce(g.rows_gated, 0)                                            as rows_gated,
    coalesce(g.quarantined_rows, 0)                                      as quarantined_rows,
    1000 * {{ safe_div('g.quarantined_rows', 'g.rows_gated') }}          as error_rate_per_1000,
    coalesce(rp.source_records, 0)                                       as source_records,
    coalesce(qp.quarantined_records, 0)                                  as quarantined_records,
    1000 * {{ safe_div('qp.quarantined_records', 'rp.source_records') }} as quarantined_per_1000_records,
    coalesce(d.closed_won_amount, 0)                                     as closed_won_amount,
    coalesce(d.revenue_leakage, 0)                                       as revenue_leakage,
    {{ safe_div('d.revenue_leakage', 'd.closed_won_amount') }}           as revenue_leakage_share,
    coalesce(d.leaked_deals, 0)                                          as leaked_deals,
    coalesce(d.pending_deals, 0)                                         as pending_deals,
    coalesce(d.pending_amount, 0)                                        as pending_amount,
    coalesce(b.dollars_at_risk, 0)                                       as dollars_at_risk,
    coalesce(b.dollars_recovered, 0)                                     as dollars_recovered,
    coalesce(d.manual_touches, 0)                                        as manual_touches,
    100 * {{ safe_div('d.manual_touches', 'd.orders') }}                 as manual_touches_per_100,
    coalesce(d.touchless_orders, 0) * {{ var('minutes_per_manual_order') }} / 60.0 as hours_saved_estimate,
    {{ var('minutes_per_manual_order') }}                                as minutes_per_manual_order,
    'ESTIMATE: touchless orders x {{ var("minutes_per_manual_order") }} clerk minutes per manual order (dbt var minutes_per_manual_order: an assumption, not a measurement)'
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
left join q2c_cohort c on c.period = p.period
left join run_p r on r.period = p.period
left join gate_p g on g.period = p.period
left join records_p rp on rp.period = p.period
left join quarantined_p qp on qp.period = p.period
left join break_p b on b.period = p.period
