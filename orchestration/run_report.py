"""What a run did, in human terms, read back from ops.sync_runs."""
from __future__ import annotations

from trueup.orchestration.config import Settings


def run_summary(settings: Settings, run_id: str) -> str:
    from trueup.connectors.warehouse import Warehouse

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
    w = max(24, *(len(a) for a in df["asset"]))   # the longest asset name (recon/companies_vs_customers)
    lines = [f"  {'asset':<{w}} {'days':>5} {'read':>9} {'written':>9} {'quarantined':>12} {'failed':>7}"]
    for r in df.itertuples():
        lines.append(f"  {r.asset:<{w}} {int(r.days):>5} {int(r.rows_read or 0):>9} {int(r.rows_written or 0):>9} "
                     f"{int(r.rows_quarantined or 0):>12} {int(r.failures):>7}")
    return "\n".join(lines)


def rejected_exports(settings: Settings) -> list[tuple[str, str]]:
    """Export days whose latest check rejected them, with the reason."""
    from trueup.connectors.warehouse import Warehouse

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


#: rows written into raw by the latest successful load of each (asset, day): a re-run day counts once
#: versions raw holds from the sources (raw is a log: a re-run adds only what it had not seen; the
#: ERP rows publish reads back after creating them are the platform's own, not synced)
RAW_ROWS_SQL = "SELECT sum(n) FROM (" + " UNION ALL ".join(
    f"SELECT count(*) AS n FROM raw.{t} WHERE _source NOT LIKE '%read back after publish%'"
    for t in ("crm_companies", "crm_contacts", "crm_deals", "erp_customers", "erp_sales_orders", "erp_invoices",
              "erp_payments")) + ") AS versions"

#: the closing summary's rows: (label, SQL)
SUMMARY_FACTS = [
    ("rows synced into raw", RAW_ROWS_SQL),
    ("rows quarantined (open)", "SELECT count(*) FROM quality.quarantine WHERE status = 'open'"),
    ("ERP orders created by Trueup", "SELECT count(*) FROM ops.sor_writes WHERE target_object = "
                                     "'sales_orders' AND state = 'confirmed'"),
    ("ERP customers created by Trueup", "SELECT count(*) FROM ops.sor_writes WHERE target_object = "
                                        "'customers' AND state = 'confirmed'"),
    ("CRM updates (numbers, receivables)", "SELECT count(*) FROM ops.sor_writes WHERE target_system = 'crm' "
                                           "AND state = 'confirmed'"),
    ("writes held for a person", "SELECT count(*) FROM ops.sor_writes WHERE state IN ('held', "
                                 "'awaiting_approval')"),
    ("reconciliation breaks open", "SELECT count(*) FROM recon.breaks WHERE status = 'open' AND category = 'break'"),
    ("reconciliation breaks resolved", "SELECT count(*) FROM recon.breaks WHERE status = 'resolved' "
                                       "AND category = 'break'"),
]
#: real breaks only, money counted once per root cause (recon.breaks_counted, assets/reconcile/store.py)
MONEY_AT_RISK_SQL = "SELECT sum(counted_at_risk) FROM recon.breaks_counted WHERE status = 'open'"
#: the open findings by category and type: real breaks (money at risk once per root cause), work
#: pending a person, and what is not due yet
RECON_BY_TYPE_SQL = (
    "SELECT category, break_type, count(*) AS n, sum(counted_at_risk) AS at_risk, sum(amount_pending) AS pending, "
    "min(problem_date) AS since FROM recon.breaks_counted WHERE status = 'open' GROUP BY category, break_type "
    "ORDER BY category, sum(counted_at_risk) + sum(amount_pending) DESC, break_type")
RECON_SECTIONS = (("break", "real breaks (money at risk, counted once)"),
                  ("pending", "pending work: waits for a person"),
                  ("timing", "timing: not yet due"))
#: ROI measures shown before/after: (column of marts.roi_summary, label, format)
ROI_MEASURES = [
    ("closed_won_deals", "closed-won deals in the window", "int"),
    ("deal_to_order_hours_p50", "deal to ERP order, hours (p50)", "num"),
    ("deal_to_order_hours_p90", "deal to ERP order, hours (p90)", "num"),
    ("paid_within_30d_rate", "paid within 30 days (deals followed 30 d)", "pct"),
    ("quote_to_cash_days_p50", "quote to cash, days (p50, followed 60 d)", "num"),
    ("touchless_rate", "orders without a manual touch", "pct"),
    ("quarantined_per_1000_records", "quarantined per 1,000 source records", "num"),
    ("revenue_leakage", "revenue leakage: never ordered", "money"),
    ("revenue_leakage_share", "  share of closed-won revenue", "pct"),
    ("pending_amount", "waiting for a person (not leakage)", "money"),
    ("manual_touches_per_100", "manual touches per 100 orders", "num"),
    ("hours_saved_estimate", "hours saved (ESTIMATE, see basis)", "num"),
]


def _scalar(wh, sql: str, params: dict | None = None, default=0):
    """The query's single value; a table that does not exist yet counts as empty."""
    from sqlalchemy.exc import ProgrammingError

    try:
        df = wh.query_df(sql, params)
    except ProgrammingError:   # DuckDB's catalog error and PostgreSQL's undefined table alike
        return default
    v = df.iat[0, 0] if len(df) else None
    return default if v is None or v != v else v


def run_totals(settings: Settings, run_id: str) -> dict:
    """What one run did and what is open after it, as numbers: rows synced into raw, quarantined by
    the gates and written to the ERP and CRM by the run; writes waiting for a person; open breaks
    and money at risk (counted once per root cause). The digest line and `--json` both read it."""
    from trueup.connectors.warehouse import Warehouse

    wh = Warehouse(settings.warehouse_url)
    try:
        r = {"r": run_id}
        synced = int(_scalar(wh, "SELECT sum(rows_written) FROM ops.sync_runs WHERE run_id = :r "
                                 "AND asset LIKE 'raw/%' AND status = 'success'", r))
        quarantined = int(_scalar(wh, "SELECT sum(rows_quarantined) FROM ops.sync_runs WHERE run_id = :r "
                                      "AND asset LIKE 'validated/%'", r))
        orders = int(_scalar(wh, "SELECT count(*) FROM ops.sor_writes WHERE run_id = :r AND "
                                 "target_object = 'sales_orders' AND state = 'confirmed'", r))
        written = int(_scalar(wh, "SELECT count(*) FROM ops.sor_writes WHERE run_id = :r AND state = 'confirmed'", r))
        held = int(_scalar(wh, "SELECT count(*) FROM ops.sor_writes WHERE state IN ('held', 'awaiting_approval')"))
        breaks = int(_scalar(wh, SUMMARY_FACTS[-2][1]))
        risk = float(_scalar(wh, MONEY_AT_RISK_SQL))
        pending = int(_scalar(wh, "SELECT count(*) FROM recon.breaks WHERE status = 'open' AND category = 'pending'"))
    finally:
        wh.dispose()
    return {"rows_synced": synced, "rows_quarantined": quarantined, "writes_confirmed": written,
            "erp_orders_created": orders, "writes_held": held, "breaks_open": breaks,
            "money_at_risk": round(risk, 2), "currency": settings.reporting_currency, "pending_open": pending}


def digest_text(t: dict, loads: bool = True) -> str:
    """One line from `run_totals`: what the run loaded, held back and posted (`loads`), and the
    breaks open after it."""
    after = f"{t['breaks_open']:,} breaks open, {t['currency']} {t['money_at_risk']:,.2f} at risk"
    if t["pending_open"]:
        after += f"; {t['pending_open']:,} waiting for a person"
    if not loads:
        return after
    return (f"synced {t['rows_synced']:,} rows, quarantined {t['rows_quarantined']:,}, created "
            f"{t['erp_orders_created']:,} ERP orders; {after}")


def run_digest(settings: Settings, run_id: str, loads: bool = True) -> str:
    """One line for one run: what it loaded, held back and posted (`loads`), and the breaks
    open after it."""
    return digest_text(run_totals(settings, run_id), loads)


def _fmt(value, kind: str) -> str:
    if value is None or value != value:  # None or NaN: nothing to measure (e.g. no order paid yet)
        return "-"
    v = float(value)
    if kind == "pct":
        return f"{v:.0%}"
    if kind == "money":
        return f"{v:,.0f}"
    if kind == "int":
        return f"{v:,.0f}"
    return f"{v:,.1f}"


def _change(before, after) -> str:
    if before is None or after is None or before != before or after != after or float(before) == 0:
        return ""
    return f"{(float(after) - float(before)) / abs(float(before)):+.0%}"


def _recon_sections(df, cur: str) -> list[str]:
    """The open reconciliation findings in three parts — real breaks, pending work, timing — each
    with its count and amount and a line per type."""
    if df.empty:
        return []
    w = max(*(len(t) for _, t in RECON_SECTIONS), *(len(str(t)) + 4 for t in df["break_type"]))
    lines = ["", f"  {'reconciliation, open':<{w}}  {'count':>6}  {cur + ' amount':>14}  {'from/due':>10}",
             f"  {'-' * w}  {'-' * 6}  {'-' * 14}  {'-' * 10}"]
    for category, title in RECON_SECTIONS:
        part = df[df["category"] == category]
        amount = part["at_risk"] if category == "break" else part["pending"]
        amount = amount.astype(float)
        lines.append(f"  {title:<{w}}  {int(part['n'].sum()):>6,}  {amount.sum():>14,.2f}  {'':>10}")
        for r, a in zip(part.itertuples(), amount):
            lines.append(f"  {'  ' + str(r.break_type):<{w}}  {int(r.n):>6,}  {a:>14,.2f}  {str(r.since)[:10]:>10}")
    lines += ["  breaks of one root cause (a deal, its order, invoices, payments) count its money once, under the",
              "  largest; from/due: the earliest business date a problem began, or falls due"]
    return lines


def demo_summary(settings: Settings) -> str:
    """The closing account of the demo, as two tables: what Trueup synced, held back, posted
    and left open, and the ROI before (manual order entry) and after go-live."""
    from trueup.connectors.warehouse import Warehouse

    wh = Warehouse(settings.warehouse_url)
    cur = settings.reporting_currency
    rows = [(label, f"{int(_scalar(wh, sql)):,}") for label, sql in SUMMARY_FACTS]
    rows.append((f"money at risk ({cur})", f"{float(_scalar(wh, MONEY_AT_RISK_SQL)):,.2f}"))
    w = max(len(label) for label, _ in rows)
    lines = ["", "== Summary", f"  {'what Trueup did':<{w}}  {'total':>14}", f"  {'-' * w}  {'-' * 14}"]
    lines += [f"  {label:<{w}}  {value:>14}" for label, value in rows]
    from sqlalchemy.exc import ProgrammingError

    try:
        lines += _recon_sections(wh.query_df(RECON_BY_TYPE_SQL), cur)
    except ProgrammingError:   # nothing reconciled yet
        pass

    try:
        roi = wh.query_df("SELECT * FROM marts.roi_summary ORDER BY period")
    except ProgrammingError:   # no ROI marts yet
        roi = None
    finally:
        wh.dispose()
    if roi is None or roi.empty:
        return "\n".join(lines + ["", "  (no ROI marts yet)"])
    by_period = {str(p): rec for p, rec in zip(roi["period"], roi.to_dict("records"))}
    before, after = by_period.get("baseline", {}), by_period.get("current", {})
    heads = ("before (manual)", "after (Trueup)", "change")
    measures = [(c, label, kind) for c, label, kind in ROI_MEASURES if c in roi.columns]
    golive = after.get("golive_date") or before.get("golive_date")
    title = f"ROI (go-live {str(golive)[:10]})" if golive is not None else "ROI"
    w = max([len(title)] + [len(label) + (len(cur) + 3 if kind == "money" else 0) for _, label, kind in measures])
    lines += ["", f"  {title:<{w}}  {heads[0]:>15}  {heads[1]:>15}  {heads[2]:>7}",
              f"  {'-' * w}  {'-' * 15}  {'-' * 15}  {'-' * 7}"]
    for c, label, kind in measures:
        label = f"{label} ({cur})" if kind == "money" else label
        b, a = before.get(c), after.get(c)
        lines.append(f"  {label:<{w}}  {_fmt(b, kind):>15}  {_fmt(a, kind):>15}  {_change(b, a):>7}")
    lines.append(f"  {'window':<{w}}  {_window(before):>15}  {_window(after):>15}")
    basis = after.get("minutes_per_manual_order") or before.get("minutes_per_manual_order")
    if basis is not None:
        lines.append(f"  hours saved assume {basis} clerk minutes per manual order (dbt var minutes_per_manual_order);"
                     f" '-': not measurable yet")
    lines.append("  definitions, bases and limits: docs/metrics.md")
    return "\n".join(lines)


def _window(row: dict) -> str:
    if not row.get("period_start"):
        return "-"
    return f"{str(row['period_start'])[5:10]}..{str(row['period_end'])[5:10]} ({int(row['days'])}d)"
