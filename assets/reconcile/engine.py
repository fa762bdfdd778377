"""Run one reconciliation: find breaks (set-based SQL), merge them statefully, record the run —
all in one warehouse transaction."""
from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field

import pandas as pd
import sqlalchemy as sa

from trueup.connectors.clock import utc_now
from trueup.connectors.warehouse import Warehouse

from .config import ReconSettings
from .rules import RuleContext, companies_customers, deals_orders, invoices_payments, orders_invoices
from .rules import source_warehouse
from .store import (create_found_table, ensure_recon_tables, found_counts, latest_merged_as_of, merge_breaks,
                    stage_breaks)

RULES = {
    "deals_vs_orders": deals_orders.find,
    "orders_vs_invoices": orders_invoices.find,
    "invoices_vs_payments": invoices_payments.find,
    "companies_vs_customers": companies_customers.find,
    "source_vs_warehouse": source_warehouse.find,
}
RECON_NAMES = tuple(RULES)


@dataclass
class ReconResult:
    recon_name: str
    partition: str
    scope: str
    left_rows: int
    right_rows: int
    matched: int
    breaks_found: int
    breaks_opened: int
    breaks_resolved: int
    breaks_open: int
    amount_at_risk: float
    by_type: dict = field(default_factory=dict)
    # known work waiting for a person, and items not yet due (not breaks: rules/__init__.py)
    pending_found: int = 0
    timing_found: int = 0
    amount_pending: float = 0.0
    pending_by_type: dict = field(default_factory=dict)
    largest: pd.DataFrame | None = None
    # source_vs_warehouse: records the source changed since they were landed for the day (not breaks)
    explained: dict = field(default_factory=dict)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("largest")
        return d


def run_reconciliation(wh: Warehouse, recon_name: str, as_of: dt.date, run_id: str,
                       settings: ReconSettings | dict | None = None, partition: str | None = None,
                       scope: str = "all", extra: dict | None = None) -> ReconResult:
    """Reconcile the state as of business date `as_of` (`asof.state_as_of`; SLAs and due dates
    are judged at that date), merge the breaks of `scope` into recon.breaks and write one
    recon.runs row. A run as of an earlier date than the latest merged one (a re-run of an old
    day) records what it found but leaves recon.breaks as it is: the open breaks are those of
    the latest business date."""
    s = settings if isinstance(settings, ReconSettings) else ReconSettings.from_dict(settings)
    rule = RULES[recon_name]
    started = utc_now()
    partition = partition or as_of.isoformat()
    with wh.begin() as conn:
        ensure_recon_tables(conn)
        create_found_table(conn)
        ctx = RuleContext(conn, wh.dialect, s, as_of, scope, extra)
        left, right, matched = rule(ctx)
        latest = latest_merged_as_of(conn, recon_name, scope)
        merged = latest is None or as_of >= (latest if isinstance(latest, dt.date) else
                                             dt.date.fromisoformat(str(latest)[:10]))
        if merged:
            counts = merge_breaks(conn, recon_name, scope, run_id, started, s.reporting_currency, as_of)
        else:
            stage_breaks(conn, recon_name, s.reporting_currency)
            counts = found_counts(conn, recon_name, scope)
        by_type = dict(conn.execute(sa.text("SELECT break_type, count(*) FROM recon_stage WHERE category = 'break' "
                                            "GROUP BY break_type")).fetchall())
        other = dict(conn.execute(sa.text("SELECT break_type, count(*) FROM recon_stage WHERE category <> 'break' "
                                          "GROUP BY break_type")).fetchall())
        largest = wh.read_df(conn, "SELECT break_type, business_key, currency, left_amount, right_amount, "
                                   "amount_at_risk FROM recon_stage WHERE category = 'break' "
                                   "ORDER BY amount_at_risk DESC, business_key LIMIT 10")
        conn.execute(sa.text(
            "INSERT INTO recon.runs (run_id, recon_name, partition, left_rows, right_rows, matched, breaks_opened, "
            "breaks_resolved, breaks_open, amount_at_risk, started_at, finished_at, scope, as_of, breaks_found, "
            "breaks_by_type, settings, merged, pending_found, timing_found, amount_pending) VALUES (:run, :name, "
            ":part, :l, :r, :m, :o, :res, :open, :risk, :st, :fin, :scope, :as_of, :found, :bt, :cfg, :merged, "
            ":pf, :tf, :ap)"),
            {"run": run_id, "name": recon_name, "part": partition, "l": left, "r": right, "m": matched,
             "o": counts["breaks_opened"], "res": counts["breaks_resolved"], "open": counts["breaks_open"],
             "risk": counts["amount_at_risk"], "st": started, "fin": utc_now(), "scope": scope, "as_of": as_of,
             "found": counts["breaks_found"], "bt": json.dumps({k: int(v) for k, v in by_type.items()}),
             "cfg": json.dumps(asdict(s)), "merged": merged, "pf": counts["pending_found"],
             "tf": counts["timing_found"], "ap": counts["amount_pending"]})
    return ReconResult(recon_name, partition, scope, left, right, matched, counts["breaks_found"],
                       counts["breaks_opened"], counts["breaks_resolved"], counts["breaks_open"],
                       counts["amount_at_risk"], {k: int(v) for k, v in by_type.items()},
                       counts["pending_found"], counts["timing_found"], counts["amount_pending"],
                       {k: int(v) for k, v in other.items()}, largest)


def run_source_vs_warehouse(wh: Warehouse, partition: str, run_id: str, sources: dict,
                            settings: ReconSettings | dict | None = None, lookup=None,
                            echo_versions: dict | None = None) -> ReconResult:
    """source_vs_warehouse for one partition; `sources` from sources.read_sources, `lookup` reads
    the source's current rows of given keys (sources.source_lookup), `echo_versions` the
    modification times of the platform's own CRM writes (echo.echo_versions)."""
    extra = {"warehouse": wh, "partition": partition, "sources": sources, "lookup": lookup,
             "echo_versions": echo_versions or {}}
    result = run_reconciliation(wh, "source_vs_warehouse", dt.date.fromisoformat(partition), run_id, settings,
                                partition=partition, scope=partition, extra=extra)
    result.explained = extra.get("explained", {})
    return result
