"""Run-failure alerting for OSS Dagster: every failed run reaches an alert sink.

Every failed run becomes one alert in the sink (connectors/alert_sink.py: a row in
``ops.alerts`` and, when ``TRUEUP_ALERT_WEBHOOK_URL`` is set, one JSON POST, secrets masked);
the ``trueup_run_failure_alert`` sensor only extracts the facts from the failed run and calls
:func:`record_alert`.
"""
from __future__ import annotations

from trueup.connectors.alert_sink import Alert, classify_failure, post_webhook, record_alert, redact  # noqa: F401
from trueup.orchestration.resources import SettingsResource, WarehouseResource


def failure_facts(context) -> dict:
    """job, partition, message and exception class of a failed run, from a
    RunFailureSensorContext: the first step failure's user error if any, else the run's."""
    run = context.dagster_run
    partition = run.tags.get("dagster/partition") or run.tags.get("trueup/business_date")
    if not partition and run.tags.get("dagster/asset_partition_range_start"):
        partition = (f"{run.tags['dagster/asset_partition_range_start']}.."
                     f"{run.tags.get('dagster/asset_partition_range_end', '')}")
    message, error_type = None, None
    try:
        step_failures = context.get_step_failure_events()
    except Exception:  # noqa: BLE001 — fall back to the run failure message
        step_failures = []
    for event in step_failures:
        data = event.step_failure_data
        err = data.error
        if data.user_failure_data and data.user_failure_data.description:
            message = data.user_failure_data.description
        if err is not None:
            while err.cause is not None:
                err = err.cause
            error_type = err.cls_name
            if not message:
                message = f"{err.cls_name}: {err.message.strip()}"
        message = f"{event.step_key}: {message}"
        break
    if not message:
        message = context.failure_event.message or "run failed"
    return {"run_id": run.run_id, "job": run.job_name, "partition": partition, "message": message,
            "error_type": error_type}


def build_alert_sensor():
    from dagster import DefaultSensorStatus, run_failure_sensor

    @run_failure_sensor(name="trueup_run_failure_alert", default_status=DefaultSensorStatus.RUNNING,
                        minimum_interval_seconds=30,
                        description="Every failed run → a row in ops.alerts and, if TRUEUP_ALERT_WEBHOOK_URL "
                                    "is set, a JSON POST to it.")
    def trueup_run_failure_alert(context, settings: SettingsResource, warehouse: WarehouseResource):
        webhook_url = settings.get().alert_webhook_url
        facts = failure_facts(context)
        with warehouse.session() as wh:
            alert = record_alert(wh, webhook_url=webhook_url, **facts)
        context.log.info(f"alert {alert.alert_id} recorded for run {alert.run_id} ({alert.error_class})")

    return trueup_run_failure_alert
