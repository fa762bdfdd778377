{#- The money in fct_quote_to_cash equals the closed-won deal amounts converted to the
    reporting currency with seeds/fx_rates.csv: returns a row when they differ. -#}
with expected as (
    select sum(d.amount * r.rate_to_usd / rr.rate_to_usd) as amount
    from {{ ref('stg_crm_deals') }} d
    join {{ ref('fx_rates') }} r on r.currency = d.currency
    join {{ ref('fx_rates') }} rr on rr.currency = {{ reporting_currency() }}
    where d.deal_stage = 'closedwon' and d.closed_at is not null
),
actual as (
    select sum(amount_reporting) as amount, count(*) as n from {{ ref('fct_quote_to_cash') }}
),
expected_n as (
    select count(*) as n from {{ ref('stg_crm_deals') }} where deal_stage = 'closedwon' and closed_at is not null
)
select e.amount as expected_amount, a.amount as actual_amount, a.n as actual_rows, en.n as expected_rows
from expected e cross join actual a cross join expected_n en
where abs(coalesce(e.amount, 0) - coalesce(a.amount, 0)) > 0.01 * greatest(a.n, 1) or a.n <> en.n
