-- runs after publish and reconcile (they write the ledger and the breaks it reads)
{{ config(tags=['roi']) }}
{#- One row per asset step attempt recorded in ops.sync_runs. -#}
with runs as (
    select
        run_id, asset, partition, attempt, started_at, finished_at, status,
        rows_read, rows_written, rows_quarantined, error_class, correlation_id,
        coalesce({{ to_date('business_date') }}, {{ to_date('partition') }}) as business_date
    from {{ source('ops', 'sync_runs') }}
),

ranked as (
    select
        runs.*,
        row_number() over (
            partition by asset, coalesce(partition, '')
            order by started_at, attempt, run_id
        ) as try_number
    from runs
)

select
    {{ hash_key("run_id || '|' || asset || '|' || coalesce(partition, '') || '|' || cast(attempt as varchar(12))") }}
                                                     as sync_run_key,
    run_id,
    asset,
    split_part(asset, '/', 1)                        as layer,
    partition,
    business_date,
    attempt,
    started_at,
    finished_at,
    {{ seconds_between('started_at', 'finished_at') }} as duration_seconds,
    status,
    rows_read,
    rows_written,
    rows_quarantined,
    error_class,
    correlation_id,
    (try_number = 1)                                 as is_first_try,
    (try_number = 1 and attempt = 1 and status = 'success') as first_attempt_success,
    case
        when business_date < {{ golive_date() }} then 'baseline'
        when business_date is not null then 'current'
    end                                              as period
from ranked
