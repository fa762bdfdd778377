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
),

-- the business date each reconciliation run ended on: what a person could see open after it
run_ends as (
    select run_id, max(as_of) as end_as_of from {{ src_recon_runs() }} group by run_id
),

-- money recovered: real breaks resolved after a run had reported them open — not those a range
-- run found as of one of its own days and resolved itself by a later day of the same run (the
-- writes of a range run belong to the nights of their days: nobody could act on such a break)
recovered as (
    select r.break_id,
           case when row_number() over (partition by coalesce(r.chain_key, r.break_id)
                                        order by r.amount_at_risk desc, r.break_id) = 1
                then coalesce(r.amount_at_risk, 0) else 0 end as counted_recovered
    from breaks r
    where r.status = 'resolved' and r.category = 'break'
      and exists (select 1 from run_ends e
                  where e.end_as_of >= coalesce(r.first_seen_as_of, cast(r.first_seen_at as date))
                    and (r.resolved_as_of is null or e.end_as_of < r.resolved_as_of))
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
    cast(coalesce(rc.counted_recovered, 0) as decimal(18, 2))        as dollars_recovered,
    case when b.status = 'open' and b.category = 'pending' then cast(coalesce(b.amount_pending, 0) as decimal(18, 2))
         else 0 end                                                  as dollars_pending,
    case
        when coalesce(b.problem_date, b.first_seen_as_of, cast(b.first_seen_at as date)) < {{ golive_date() }}
            then 'baseline'
        else 'current'
    end                                                              as period
from breaks b
cross join as_of a
left join recovered rc on rc.break_id = b.break_id
