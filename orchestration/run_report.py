"""What a run did, in human terms, read back from ops.sync_runs."""
from __future__ import annotations

from orchestration.config import Settings


def run_summary(settings: Settings, run_id: str) -> str:
    from connectors.warehouse import Warehouse

    wh = Warehouse(settings.warehouse_url)
    try:
        df = wh.query_df(
            "SELECT asset, count(*) AS days, sum(rows_read) AS rows_read, sum(rows_written) AS rows_written, "
            "sum(rows_quarantined) AS rows_quarantined, "
            "sum(CASE WHEN status = 'failure' THEN 1 ELSE 0 END) AS failures "
            "FROM ops.sync_runs WHERE run_id = :r GROUP BY asset ORDER BY asset", {"r": run_id})
    except Exception:  # noqa: BLE001 - no ops tables yet means nothing ran
        return "  (no run facts recorded)"
    finally:
        wh.dispose()
    if df.empty:
        return "  (no run facts recorded)"
    lines = [f"  {'asset':<24} {'days':>5} {'read':>9} {'written':>9} {'quarantined':>12} {'failed':>7}"]
    for r in df.itertuples():
        lines.append(f"  {r.asset:<24} {int(r.days):>5} {int(r.rows_read or 0):>9} {int(r.rows_written or 0):>9} "
                     f"{int(r.rows_quarantined or 0):>12} {int(r.failures):>7}")
    return "\n".join(lines)


def rejected_exports(settings: Settings) -> list[tuple[str, str]]:
    """Export days whose latest check rejected them, with the reason."""
    from connectors.warehouse import Warehouse

    wh = Warehouse(settings.warehouse_url)
    try:
        df = wh.query_df("SELECT export_date, status, reason, checked_at FROM ops.export_loads ORDER BY checked_at")
    except Exception:  # noqa: BLE001 - no ops tables: nothing was checked
        return []
    finally:
        wh.dispose()
    latest = df.groupby("export_date").tail(1)
    bad = latest[latest["status"] == "rejected"].sort_values("export_date")
    return list(zip(bad["export_date"], bad["reason"]))
