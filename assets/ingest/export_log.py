"""ops.export_loads: every verification of an ERP export, loaded or rejected, with the reason."""
from __future__ import annotations

import sqlalchemy as sa

from trueup.assets.run_facts import ensure_ops_tables
from trueup.connectors.clock import utc_now
from trueup.connectors.warehouse import Warehouse


def record_export_loads(wh: Warehouse, loads: list[tuple], run_id: str | None) -> None:
    """Many verifications in one transaction: (export_date, digest, status, reason, rows)."""
    if not loads:
        return
    ensure_ops_tables(wh)
    at = utc_now()
    with wh.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO ops.export_loads (export_date, manifest_sha256, status, reason, rows_invoices, "
            "rows_payments, run_id, checked_at) VALUES (:d, :sha, :status, :reason, :ri, :rp, :run, :at)"),
            [{"d": d, "sha": sha, "status": status, "reason": reason, "ri": rows.get("invoices.csv"),
              "rp": rows.get("payments.csv"), "run": run_id, "at": at} for d, sha, status, reason, rows in loads])


def loaded_digests(wh: Warehouse) -> dict[str, str]:
    """export date → manifest digest of its latest successful load."""
    ensure_ops_tables(wh)
    df = wh.query_df("SELECT export_date, manifest_sha256, checked_at FROM ops.export_loads "
                     "WHERE status = 'loaded' ORDER BY checked_at")
    return dict(zip(df["export_date"], df["manifest_sha256"]))
