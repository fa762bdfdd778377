-- runs after publish and reconcile (they write the ledger and the breaks it reads)
{{ config(tags=['roi']) }}
{#- One row per closed-won deal: deal -> ERP order -> first invoice -> cash. -#}
with deals as (
    select deal_id, amount, currency, closed_at, source_partition
    from {{ ref('stg_crm_deals') }}
    where deal_stage = 'closedwon' and closed_at is not null
),

-- the business clock: end of the latest day whose deals were loaded
as_of as (
    select cast({{ to_date('max(source_partition)') }} + interval '1 day' as timestamp) as as_of_at
    from {{ ref('stg_crm_deals') }}
),

rates as (
    select currency, rate_to_usd from {{ ref('fx_rates') }}
),

erp_orders as (
    select order_number, crm_deal_id, source, order_date, created_at
    from {{ ref('stg_erp_sales_orders') }}
    where crm_deal_id is not null
),

-- orders the platform wrote and the ERP confirmed (the ledger), for those not yet landed
-- in the warehouse (an order is exported on the day it was created)
ledger_orders as (
    select
        {{ json_text('payload', 'order_number') }}           as order_number,
        business_key                                         as crm_deal_id,
        'integration'                                        as source,
        {{ to_date(json_text('payload', 'order_date')) }}    as order_date,
        updated_at                                           as created_at
    from {{ src_sor_writes() }}
    where target_system = 'erp' and target_object = 'sales_orders' and state = 'confirmed'
),

all_orders as (
    select * from erp_orders
    union all
    select l.* from ledger_orders l
    where l.order_number is not null
      and not exists (select 1 from erp_orders e where e.order_number = l.order_number)
),

orders as (
    select
        order_number, crm_deal_id, source, created_at,
        -- a platform order carries the wall clock of the run that wrote it; for a backfill
        -- that is long after its business day, so it counts at most at the end of its order_date
        case
            when source = 'integration' and order_date is not null
                 and created_at > cast(order_date + interval '1 day' as timestamp)
            then cast(order_date + interval '1 day' as timestamp)
            else created_at
        end as ordered_at
    from all_orders
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
        o.created_at                                        as order_created_at,
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
        a.as_of_at
    from deals d
    cross join as_of a
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
    case when cast(closed_at as date) < {{ golive_date() }} then 'baseline' else 'current' end as period,
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
    case
        when not (ordered_at is not null and ordered_at <= order_due_at) and order_due_at <= as_of_at
        then amount_reporting else 0
    end                                                     as revenue_leakage,
    has_manual_step,
    was_quarantined,
    case
        when order_number is null then null
        else (created_by = 'integration' and not has_manual_step and not was_quarantined)
    end                                                     as is_touchless,
    {{ flag("created_by = 'manual'") }} + {{ flag('has_manual_step') }} + {{ flag('was_quarantined') }}
                                                            as manual_touches
from joined
