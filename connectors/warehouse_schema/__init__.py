"""The platform's own tables in the warehouse — `ops`, `quality`, `recon` — described once.

`tables.py` holds every table and view with its columns and types; writers import them from
here and hold no DDL. A writer ensures its group before it writes (`ensure(wh, LEDGER)`):
the group is created or upgraded the first time in a process, later calls cost nothing.
The dbt sources and the SQL reports that read these tables are checked against these
definitions by tests/unit/test_warehouse_schema.py.

It sits beside the warehouse connector, below `assets/` and `quality/`, because both write
these tables (the gate's quarantine and results are written by `quality/store.py`). The
versioned migrations of what a release cannot upgrade in place (the raw version log, labels
for old rows) are `assets/migrations.py`, recorded in `ops.schema_migrations`.
`raw` and `validated` tables follow the source objects and the contracts; they are made by
`assets/ingest/raw_store.py` and `quality/store.py`.
"""
from .ensure import add_missing_columns, ensure, ensure_in
from .model import Column, Group, Table, View
from .tables import (
    ALERT_LOG,
    ALERTS,
    BREAKS,
    BREAKS_COUNTED,
    CRM_BUDGET,
    CRM_BUDGET_GROUP,
    EXPORT_LOADS,
    FX_RATES,
    GATE_RESULTS,
    GROUPS,
    LEDGER,
    MIGRATION_LOG,
    QUALITY,
    QUARANTINE,
    QUARANTINE_ACTIONS,
    QUARANTINE_DAYS,
    RECON,
    RUN_FACTS,
    RUNS,
    SCHEMA_MIGRATIONS,
    SOR_WRITES,
    SYNC_RUNS,
    TABLES,
    VIEWS,
)

__all__ = [
    "ALERT_LOG", "ALERTS", "BREAKS", "BREAKS_COUNTED", "CRM_BUDGET", "CRM_BUDGET_GROUP", "EXPORT_LOADS", "FX_RATES", "GATE_RESULTS", "GROUPS",
    "LEDGER", "MIGRATION_LOG", "QUALITY", "QUARANTINE", "QUARANTINE_ACTIONS", "QUARANTINE_DAYS", "RECON", "RUN_FACTS", "RUNS",
    "SCHEMA_MIGRATIONS", "SOR_WRITES", "SYNC_RUNS", "TABLES", "VIEWS",
    "Column", "Group", "Table", "View", "add_missing_columns", "ensure", "ensure_in",
]
