-- runs after publish and reconcile (they write the ledger and the breaks it reads)
{{ config(tags=['roi']) }}
{#- One row per reconciliation finding: real breaks, pending work and items not yet due, dated by
    the business date the problem began, with age and money at risk counted once per root cause. -#}
with breaks as (
    select * from {{ src_recon_breaks() }}
),

-- the latest business date reconciled: open items age up to it
as_of as (
    select max(coalesce(last_seen_as_of, cast(last_seen_at as date))) as as_of_date from breaks
)

select
    b.break_id,
    b.recon_name,
    b.break_type,
    coalesce(b.category, 'break')                                    as category,
    b.business_key,
    b.left_system,
    b.right_system,
    b.left_amount,
    b.right_amount,
    b.currency,
    cast(coalesce(b.amount_at_risk, 0) as decimal(18, 2))           as amount_at_risk,
    cast(coalesce(b.amount_pending, 0) as decimal(18, 2))           as amount_pending,
    b.status,
    b.owner_system,
    b.reason,
    b.chain_key,
    b.first_seen_at,
    b.last_seen_at,
    b.resolved_at,
    coalesce(b.problem_date, b.first_seen_as_of, cast(b.first_seen_at as date)) as break_date,
    {{ days_between("cast(coalesce(b.problem_date, b.first_seen_as_of, cast(b.first_seen_at as date)) as timestamp)",
                    "cast(coalesce(b.resolved_as_of, a.as_of_date) as timestamp)") }}  as age_days,
    case when b.status = 'open' then cast(coalesce(b.counted_at_risk, 0) as decimal(18, 2)) else 0 end
                                                                     as dollars_at_risk,
    case when b.status = 'resolved' then cast(coalesce(b.counted_at_risk, 0) as decimal(18, 2)) else 0 end
                                                                     as dollars_recovered,
    case when b.status = 'open' and b.category = 'pending' then cast(coalesce(b.amount_pending, 0) as decimal(18, 2))
         else 0 end                                                  as dollars_pending,
    case
        when coalesce(b.problem_date, b.first_seen_as_of, cast(b.first_seen_at as date)) < {{ golive_date() }}
            then 'baseline'
        else 'current'
    end                                                              as period
from breaks b
cross join as_of a
