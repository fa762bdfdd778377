"""The Trueup code location: gathers the domain packages' definitions and applies policy.
No business logic lives here."""
from __future__ import annotations

from dagster import Definitions

from trueup.assets.analyst_snapshot import warehouse_snapshot
from trueup.assets.gate.definitions import build_gate_assets
from trueup.assets.gate.replay_job import replay_quarantine
from trueup.assets.ingest.definitions import build_ingest_assets
from trueup.assets.operations_log import operations_log_specs
from trueup.assets.publish.definitions import approve_write, build_publish_assets, resolve_held_write
from trueup.assets.reconcile.definitions import build_reconcile_assets, build_reconcile_job_and_schedule
from trueup.assets.transform.definitions import build_transform_assets, build_transform_resources
from trueup.assets.transform.source_freshness import build_source_freshness_check
from trueup.orchestration.alerts import build_alert_sensor
from trueup.orchestration.catalog import with_catalog
from trueup.orchestration.freshness import with_freshness
from trueup.orchestration.intraday import build_intraday_sensor, intraday_publish
from trueup.orchestration.jobs import build_jobs
from trueup.orchestration.partitions import daily_partitions
from trueup.orchestration.resources import default_resources
from trueup.orchestration.schedules import build_nightly_schedule
from trueup.orchestration.sensors import build_export_sensor


def warehouse_kind() -> str:
    """The kind the dbt models are shown with: the warehouse the code location builds them in."""
    from trueup.orchestration.config import settings_sources

    url = settings_sources().get("TRUEUP_WAREHOUSE_URL") or ""
    return "postgres" if url.startswith("postgresql") else "duckdb"


def build_definitions() -> Definitions:
    from trueup.orchestration.config import intraday_settings, nightly_at

    from trueup.orchestration.executors import partitioned_job_executor

    partitions = daily_partitions()
    intraday_on, intraday_every = intraday_settings()
    executor = partitioned_job_executor()
    nightly, export_ingest, sync_and_gate = build_jobs(partitions, executor)
    reconcile_job, reconcile_schedule = build_reconcile_job_and_schedule(partitions, executor)
    return Definitions(
        assets=with_catalog([*with_freshness(build_ingest_assets(partitions)), *build_gate_assets(partitions),
                             *build_publish_assets(partitions), *build_transform_assets(warehouse_kind()),
                             *build_reconcile_assets(partitions), *operations_log_specs(), warehouse_snapshot]),
        asset_checks=[build_source_freshness_check()],
        jobs=[nightly, export_ingest, sync_and_gate, replay_quarantine, approve_write, resolve_held_write,
              reconcile_job, intraday_publish],
        schedules=[build_nightly_schedule(nightly, nightly_at()), reconcile_schedule],
        sensors=[build_export_sensor(export_ingest, partitions), build_alert_sensor(),
                 build_intraday_sensor(intraday_publish, running=intraday_on, interval_seconds=intraday_every)],
        resources={**default_resources(), **build_transform_resources()},
    )


defs = build_definitions()
