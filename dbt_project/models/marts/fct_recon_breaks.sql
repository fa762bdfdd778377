-- runs after publish and reconcile (they write the ledger and the breaks it reads)
{{ config(tags=['roi']) }}
{#- One row per reconciliation break, with its business date, age and money at risk. -#}
with breaks as (
    select * from {{ src_recon_breaks() }}
),

run_dates as (
    select run_id, recon_name, min(as_of) as as_of
    from {{ src_recon_runs() }}
    group by run_id, recon_name
),

as_of as (
    select max(last_seen_at) as as_of_at from breaks
)

select
    b.break_id,
    b.recon_name,
    b.break_type,
    b.business_key,
    b.left_system,
    b.right_system,
    b.left_amount,
    b.right_amount,
    b.currency,
    cast(coalesce(b.amount_at_risk, 0) as decimal(18, 2))           as amount_at_risk,
    b.status,
    b.first_seen_at,
    b.last_seen_at,
    b.resolved_at,
    coalesce(r.as_of, cast(b.first_seen_at as date))                as break_date,
    {{ days_between('b.first_seen_at', 'coalesce(b.resolved_at, a.as_of_at)') }} as age_days,
    case when b.status = 'open' then cast(coalesce(b.amount_at_risk, 0) as decimal(18, 2)) else 0 end
                                                                     as dollars_at_risk,
    case when b.status = 'resolved' then cast(coalesce(b.amount_at_risk, 0) as decimal(18, 2)) else 0 end
                                                                     as dollars_recovered,
    case
        when coalesce(r.as_of, cast(b.first_seen_at as date)) < {{ golive_date() }} then 'baseline'
        else 'current'
    end                                                              as period
from breaks b
left join run_dates r on r.run_id = b.run_id and r.recon_name = b.recon_name
cross join as_of a
