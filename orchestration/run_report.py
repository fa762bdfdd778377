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


def demo_summary(settings: Settings) -> str:
    """The closing account of the demo: what was synced, held back, posted, and what it was worth."""
    from connectors.warehouse import Warehouse

    wh = Warehouse(settings.warehouse_url)

    def one(sql: str, default=0):
        try:
            v = wh.scalar(sql)
            return default if v is None else v
        except Exception:  # noqa: BLE001 - a table that does not exist yet counts as empty
            return default

    facts = [
        ("rows synced into raw", "SELECT sum(rows_written) FROM ops.sync_runs WHERE asset LIKE 'raw/%' "
                                 "AND status = 'success'"),
        ("rows quarantined (open)", "SELECT count(*) FROM quality.quarantine WHERE status = 'open'"),
        ("ERP orders created by Trueup", "SELECT count(*) FROM ops.sor_writes WHERE target_object = "
                                         "'sales_orders' AND state = 'confirmed'"),
        ("ERP customers created by Trueup", "SELECT count(*) FROM ops.sor_writes WHERE target_object = "
                                            "'customers' AND state = 'confirmed'"),
        ("CRM updates (numbers, receivables)", "SELECT count(*) FROM ops.sor_writes WHERE target_system = 'crm' "
                                               "AND state = 'confirmed'"),
        ("writes held for a person", "SELECT count(*) FROM ops.sor_writes WHERE state IN ('held', "
                                     "'awaiting_approval')"),
        ("reconciliation breaks open", "SELECT count(*) FROM recon.breaks WHERE status = 'open'"),
        ("reconciliation breaks resolved", "SELECT count(*) FROM recon.breaks WHERE status = 'resolved'"),
    ]
    lines = ["", "== Summary"] + [f"  {label:<38} {int(one(sql)):>12,}" for label, sql in facts]
    risk = float(one("SELECT sum(amount_at_risk) FROM recon.breaks WHERE status = 'open'"))
    lines.append(f"  {'money at risk (' + settings.reporting_currency + ')':<38} {risk:>12,.2f}")
    try:
        roi = wh.query_df("SELECT * FROM marts.roi_summary ORDER BY period")
    except Exception:  # noqa: BLE001
        roi = None
    if roi is not None and len(roi):
        lines += ["", "== ROI: before (manual order entry) vs after (Trueup)"]
        cols = [c for c in ("deal_to_order_hours_p50", "deal_to_order_hours_p90", "quote_to_cash_days_p50",
                            "touchless_rate", "error_rate_per_1000", "revenue_leakage", "manual_touches_per_100",
                            "hours_saved_estimate") if c in roi.columns]
        lines.append(f"  {'measure':<28}" + "".join(f"{str(p):>16}" for p in roi["period"]))
        for c in cols:
            vals = "".join(f"{'' if v is None or v != v else f'{float(v):,.2f}':>16}" for v in roi[c])
            label = c + (" (estimate)" if c == "hours_saved_estimate" else "")
            lines.append(f"  {label:<28}{vals}")
    wh.dispose()
    return "\n".join(lines)
