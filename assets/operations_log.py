"""The platform's own operational tables, shown in the catalog as what they are: logs every step
writes beside its real output (run facts, the write ledger, gate results and quarantine,
reconciliation runs). dbt models read them; no step materialises them as its product, so they are
external assets with an owner and a description rather than stubs."""
from dagster import AssetKey, AssetSpec

GROUP = "operations_log"
OWNER = "team:data-platform"

TABLES = {
    ("ops", "sync_runs"): "One row per (asset, partition) of every step attempt, whatever its outcome: rows read, "
                          "written and quarantined, error class and message (assets/asset_run.py writes it).",
    ("ops", "export_loads"): "One row per ERP export (a day's file set) the ingest loaded or rejected whole, with the "
                             "reason (assets/ingest/export_log.py writes it).",
    ("ops", "sor_writes"): "The write ledger: one row per write the platform planned to a system of record, with "
                           "its idempotency key, payload hash, state and decisions (publish and the held-write jobs).",
    ("quality", "gate_results"): "One row per gate evaluation of a contract on a partition, with its batch kind "
                                 "(the day's batch, publish's read-back, a replay, the outbound check).",
    ("quality", "quarantine"): "Rows a gate held back, with the reason, attempts and resolution (replay, discard).",
    ("quality", "quarantine_days"): "Every business day on which a record was quarantined (the quarantine keeps "
                                    "the latest); the ROI marts count quarantined records per period from it.",
    ("recon", "runs"): "One row per reconciliation run and partition (the business date reconciled as of).",
    ("recon", "breaks_counted"): "recon.breaks with the money at risk counted once per root cause (a view the "
                                 "reconciliation keeps).",
}


def operations_log_specs() -> list[AssetSpec]:
    return [AssetSpec(key=AssetKey(list(path)), group_name=GROUP, owners=[OWNER], description=text,
                      kinds={"sql"}) for path, text in TABLES.items()]
