"""Jobs. Their steps run in the run's process by default: DuckDB admits one writer at a time, and
a process per step would cost ~3 s each on a small machine (measured on 2 cores). With a
PostgreSQL warehouse, TRUEUP_EXECUTOR chooses the multiprocess or the Celery executor
(orchestration/executors.py)."""
from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from trueup.assets.transform.definitions import TRANSFORM_GROUPS
from trueup.assets.transform.source_freshness import check_keys as freshness_check_keys

# ingest, gates, then the dbt models (transform: the groups of assets/transform/definitions.py
# TRANSFORM_GROUPS), which depend on the gates and so run after them
# and last the analysts' copy of a DuckDB warehouse (assets/analyst_snapshot.py)
NIGHTLY_GROUPS = ("ingest_crm", "ingest_erp", "gate", "publish", "reconcile", *TRANSFORM_GROUPS, "analyst")


def nightly_selection() -> AssetSelection:
    return AssetSelection.groups(*NIGHTLY_GROUPS)


def without_dbt_freshness(selection: AssetSelection) -> AssetSelection:
    """`selection` without the raw tables' dbt source freshness check: the nightly job runs it
    once a night; a sync or an export's load would pay for dbt (its import and parse) to say
    again what the night says."""
    return selection - AssetSelection.checks(*freshness_check_keys())


def build_jobs(partitions_def, executor_def):
    nightly = define_asset_job(
        "nightly_sync", selection=nightly_selection(), partitions_def=partitions_def,
        executor_def=executor_def,
        description="One business day: ingest CRM and ERP into raw, then gate every object into validated, then build the dbt models.",
    )
    export_ingest = define_asset_job(
        "erp_export_ingest",
        selection=without_dbt_freshness(AssetSelection.assets(
            ["raw", "erp_invoices"], ["raw", "erp_payments"], ["validated", "erp_invoices"], ["validated", "erp_payments"])),
        partitions_def=partitions_def, executor_def=executor_def,
        description="Load one verified ERP export (started by the export sensor).",
    )
    sync_and_gate = define_asset_job(
        "sync_and_gate", selection=without_dbt_freshness(AssetSelection.groups("ingest_crm", "ingest_erp", "gate")),
        partitions_def=partitions_def, executor_def=executor_def,
        description="Only the first half of the night: ingest and gate (no publishing, no dbt) — for "
                    "catching up the warehouse without writing to any system of record.",
    )
    return nightly, export_ingest, sync_and_gate
