-- runs after publish and reconcile (they write the ledger and the breaks it reads)
{{ config(tags=['roi']) }}
{#- One row per closed-won deal: deal -> ERP order -> first invoice -> cash. -#}
with deals as (
    select deal_id, amount, currency, closed_at, source_partition
    from {{ ref('stg_crm_deals') }}
    where deal_stage = 'closedwon' and closed_at is not null
),

-- the business clock, and the two periods of equal length (roi_periods)
periods as (select * from {{ ref('roi_periods') }}),
as_of as (select max(as_of_at) as as_of_at from periods),

rates as (
    select currency, rate_to_usd from {{ ref('fx_rates') }}
),

-- the platform's confirmed ERP orders, with the business clock of the night each was written
-- (ops.sor_writes.business_at; rows from before it was recorded: the night of their business_date)
ledger_orders as (
    select
        {{ json_text('payload', 'order_number') }}           as order_number,
        business_key                                         as crm_deal_id,
        'integration'                                        as source,
        {{ to_date(json_text('payload', 'order_date')) }}    as order_date,
        coalesce(business_at, cast({{ to_date('business_date') }} + interval '1 day' + interval '2 hours' as timestamp))
                                                             as written_at
    from {{ src_sor_writes() }}
    where target_system = 'erp' and target_object = 'sales_orders' and state = 'confirmed'
),

erp_orders as (
    select o.order_number, o.crm_deal_id, o.source, o.order_date,
           -- a clerk's order exists from its creation; Trueup's from the night that wrote it
           case when o.source = 'integration' then coalesce(l.written_at, o.created_at) else o.created_at end
                                                             as ordered_at
    from {{ ref('stg_erp_sales_orders') }} o
    left join ledger_orders l on l.order_number = o.order_number
    where o.crm_deal_id is not null and coalesce(o.status, '') <> 'cancelled'
),

orders as (
    select order_number, crm_deal_id, source, ordered_at from erp_orders
    union all
    select l.order_number, l.crm_deal_id, l.source, l.written_at from ledger_orders l
    where l.order_number is not null
      and not exists (select 1 from erp_orders e where e.order_number = l.order_number)
),

-- what the reconciliation says of each deal today: no ERP order at all (linked, paired or a
-- probable match) past the SLA = leakage; an order that waits for a person = pending
recon as (
    select business_key as deal_id,
           max(case when break_type = 'missing_in_erp' then 1 else 0 end)             as is_missing,
           max(case when category = 'pending' then 1 else 0 end)                      as is_pending,
           max(case when category = 'pending' then break_type end)                    as pending_state
    from {{ src_recon_breaks() }}
    where recon_name = 'deals_vs_orders' and status = 'open'
    group by business_key
),

first_order as (
    select * from (
        select orders.*, row_number() over (partition by crm_deal_id order by ordered_at, order_number) as rn
        from orders
    ) o
    where rn = 1
),

invoices as (
    select order_number, min(created_at) as first_invoiced_at, sum(amount) as invoiced_amount
    from {{ ref('stg_erp_invoices') }}
    where order_number is not null
    group by order_number
),

payments as (
    select
        i.order_number,
        p.received_at,
        sum(p.amount) over (
            partition by i.order_number order by p.received_at, p.payment_id
            rows between unbounded preceding and current row
        ) as paid_to_date
    from {{ ref('stg_erp_payments') }} p
    join {{ ref('stg_erp_invoices') }} i on i.invoice_number = p.invoice_number
    where i.order_number is not null and p.received_at is not null
),

paid as (
    select p.order_number, min(p.received_at) as paid_at
    from payments p
    join invoices i on i.order_number = p.order_number
    where p.paid_to_date >= i.invoiced_amount - 0.01
    group by p.order_number
),

manual_steps as (
    select business_key as deal_id, 1 as has_manual_step
    from {{ src_sor_writes() }}
    where target_system = 'erp' and target_object = 'sales_orders'
      and (hold_reason is not null or approved_by is not null or state in ('held', 'awaiting_approval'))
    group by business_key
),

quarantined as (
    select business_key as deal_id, 1 as was_quarantined
    from {{ source('quality', 'quarantine') }}
    where object = 'crm_deals'
    group by business_key
),

joined as (
    select
        d.deal_id,
        o.order_number,
        d.closed_at,
        o.ordered_at,
        o.ordered_at                                        as order_created_at,
        i.first_invoiced_at,
        pd.paid_at,
        d.amount                                            as deal_amount,
        d.currency                                          as deal_currency,
        cast(d.amount * r.rate_to_usd / rr.rate_to_usd as decimal(18, 2)) as amount_reporting,
        {{ reporting_currency() }}                          as reporting_currency,
        o.source                                            as created_by,
        coalesce(ms.has_manual_step, 0) = 1                 as has_manual_step,
        coalesce(q.was_quarantined, 0) = 1                  as was_quarantined,
        d.closed_at + interval '{{ var("order_sla_hours") }} hours' as order_due_at,
        a.as_of_at,
        coalesce(rc.is_missing, 0) = 1                      as is_missing_order,
        coalesce(rc.is_pending, 0) = 1                      as is_pending,
        rc.pending_state,
        coalesce(w.period, 'earlier')                       as period
    from deals d
    cross join as_of a
    left join periods w on cast(d.closed_at as date) between w.period_start and w.period_end
    left join recon rc on rc.deal_id = d.deal_id
    left join first_order o on o.crm_deal_id = d.deal_id
    left join invoices i on i.order_number = o.order_number
    left join paid pd on pd.order_number = o.order_number
    left join rates r on r.currency = d.currency
    left join rates rr on rr.currency = {{ reporting_currency() }}
    left join manual_steps ms on ms.deal_id = d.deal_id
    left join quarantined q on q.deal_id = d.deal_id
)

select
    deal_id,
    order_number,
    closed_at,
    ordered_at,
    first_invoiced_at,
    paid_at,
    amount_reporting,
    {{ hours_between('closed_at', 'ordered_at') }}          as deal_to_order_hours,
    {{ days_between('ordered_at', 'first_invoiced_at') }}   as order_to_invoice_days,
    {{ days_between('first_invoiced_at', 'paid_at') }}      as invoice_to_cash_days,
    {{ days_between('closed_at', 'paid_at') }}              as quote_to_cash_days,
    created_by,
    period,
    cast(closed_at as date)                                 as closed_date,
    deal_amount,
    deal_currency,
    reporting_currency,
    order_created_at,
    order_due_at,
    as_of_at,
    case
        when ordered_at is not null and ordered_at <= order_due_at then 'met'
        when order_due_at <= as_of_at then 'breached'
        else 'pending'
    end                                                     as order_sla_status,
    -- no ERP order at all past the SLA (the reconciliation's missing_in_erp); late is not lost
    case when is_missing_order then amount_reporting else 0 end as revenue_leakage,
    is_pending,
    pending_state,
    case when is_pending then amount_reporting else 0 end   as pending_amount,
    -- followed long enough to know whether it was paid within 30 days (right-censoring)
    as_of_at >= closed_at + interval '30 days'              as followed_30d,
    paid_at is not null and paid_at <= closed_at + interval '30 days' as paid_within_30d,
    has_manual_step,
    was_quarantined,
    case
        when order_number is null then null
        else (created_by = 'integration' and not has_manual_step and not was_quarantined)
    end                                                     as is_touchless,
    {{ flag("created_by = 'manual'") }} + {{ flag('has_manual_step') }} + {{ flag('was_quarantined') }}
                                                            as manual_touches
from joined
