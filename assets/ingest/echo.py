"""Echo suppression: every CRM write bumps the record's modification time, so the platform's
own write-backs come back through the next incremental sync. A row whose (id, updatedAt) is
exactly the version a confirmed ledger write produced is an echo, not a business change."""
from __future__ import annotations

import pandas as pd

from trueup.connectors.warehouse import Warehouse


def platform_echoes(wh: Warehouse, crm_object: str, rows: pd.DataFrame) -> dict[str, int]:
    """Echo rows per partition among `rows` (which carry `_partition`)."""
    if rows.empty:
        return {}
    try:
        ledger = wh.query_df("SELECT payload, target_version FROM ops.sor_writes WHERE target_system = 'crm' AND "
                             "target_object = :t AND state = 'confirmed' AND target_version IS NOT NULL",
                             {"t": crm_object})
    except Exception:  # noqa: BLE001 - no ledger yet: nothing was written
        return {}
    if ledger.empty:
        return {}
    versions = set(ledger["target_version"])
    echo = rows[rows["updated_at"].isin(versions)]
    return echo.groupby("_partition").size().to_dict()


def echo_versions(wh: Warehouse) -> dict[str, set[str]]:
    """{raw object name: the CRM modification times the platform's confirmed writes produced}."""
    try:
        ledger = wh.query_df("SELECT target_object, target_version FROM ops.sor_writes WHERE target_system = 'crm' "
                             "AND state = 'confirmed' AND target_version IS NOT NULL")
    except Exception:  # noqa: BLE001 - no ledger yet: nothing was written
        return {}
    return {f"crm_{t}": set(g["target_version"]) for t, g in ledger.groupby("target_object")}
