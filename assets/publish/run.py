"""One publishing pass for a business day (no Dagster here): resolve what an interrupted
run left behind, plan, check the outbound contracts, record the ledger, send."""
from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

import pandas as pd

from trueup.connectors.clock import NIGHTLY_AT
from trueup.connectors.errors import SyncError
from trueup.connectors.warehouse import Warehouse
from trueup.quality.contracts import OUTBOUND
from trueup.quality.gate import evaluate_batch
from trueup.quality.store import persist_gates

from . import crm_writer, erp_writer
from .business_time import stamp_business_time
from .financials import financial_writes
from .ledger import Write, approvals, failing_too_long, plan, releases, still_to_send
from .plan import Plan, build_plan
from .policy import DEFAULT_APPROVAL_THRESHOLD



@dataclass
class PublishSummary:
    dry_run: bool
    customers_created: int = 0
    orders_created: int = 0
    crm_updates: int = 0
    crm_financials: int = 0
    rejected: int = 0
    unknown: int = 0
    retry_later: int = 0       # writes a transient failure left for later runs (the target was down)
    failing_too_long: list[dict] = field(default_factory=list)   # to alert on (one alert per write)
    resolved_from_earlier_runs: int = 0
    held: list[tuple[str, str]] = field(default_factory=list)
    awaiting_approval: list[tuple[str, str]] = field(default_factory=list)
    quarantined: int = 0
    before_golive: int = 0
    # intraday: deals whose order needs an ERP customer the ERP does not have yet — left for the night
    left_for_nightly: list[str] = field(default_factory=list)
    sample: list[dict] = field(default_factory=list)
    # a dry run's plan, whole: what it would send, and what it would hold (write, state, why)
    would_send: list[Write] = field(default_factory=list)
    would_hold: list[tuple[Write, str, str]] = field(default_factory=list)


@contextlib.contextmanager
def publish_lock(home: Path, wh: Warehouse | None = None, owner: str = "a publisher"):
    """One publisher at a time: a PostgreSQL advisory lock on the warehouse when it is PostgreSQL
    (holds across machines), else a file lock under TRUEUP_HOME (a DuckDB warehouse is one local
    file). A second publisher waits; the ledger then shows it what the first one did. The
    target's unique keys stay the last line."""
    from trueup.connectors.locks import lock

    pg = wh.engine if wh is not None and wh.dialect == "postgresql" else None
    with lock("publish", home=home, owner=owner, pg_engine=pg):
        yield


def _outbound_check(wh: Warehouse, writes: list[Write], obj: str, partition: str, run_id: str,
                    dry_run: bool) -> tuple[list[Write], int]:
    """Writes that fail their outbound contract are quarantined, never sent."""
    if not writes:
        return [], 0
    contract = OUTBOUND[obj]
    rows = pd.DataFrame([{k: (None if v is None else str(v)) for k, v in w.payload.items()} for w in writes])
    outcome = evaluate_batch(contract, rows, {}, tombstone_column=None)
    if not dry_run and outcome.rows_quarantined:
        persist_gates(wh, {partition: outcome}, run_id)
    bad = set(outcome.quarantined[contract.key].astype(str)) if outcome.rows_quarantined else set()
    return [w for w in writes if str(w.payload[contract.key]) not in bad], outcome.rows_quarantined


def land_confirmed_writes(wh: Warehouse, engine, tz: str, run_id: str, business_day: str) -> int:
    """What the platform created in the ERP lands in the warehouse now, read back from the ERP
    and gated like any ERP row — downstream (staging, reconciliation) sees tonight's orders
    tonight, not when the next day's ingest picks up the rows' modification day.

    The versions read back belong to `business_day`, the night that wrote them (their ERP
    modification time is the wall clock of the run): the state as of that night includes them,
    and when a later ingest sees the same versions again, raw already holds them."""
    from trueup.assets.gate.reland import land_and_gate
    from trueup.assets.ingest.reread import reread
    from trueup.quality.contracts import INBOUND

    total = 0
    for obj_name, key in (("erp_customers", "customer_number"), ("erp_sales_orders", "order_number")):
        target = obj_name.removeprefix("erp_")
        keys = [json_key(p, key) for p in wh.query_df(
            "SELECT payload FROM ops.sor_writes WHERE target_system = 'erp' AND target_object = :t AND "
            "state = 'confirmed'", {"t": target})["payload"]]
        if not keys:
            continue
        with wh.begin() as conn:
            have = set() if not wh.table_columns(conn, "validated", f"{obj_name}_current") else set(wh.read_df(
                conn, f"SELECT {key} AS k FROM validated.{obj_name}_current")["k"])
        missing = [k for k in keys if k not in have]
        if not missing:
            continue
        rows = reread(obj_name, missing, tz=tz, wh=wh, erp_engine=engine)
        rows["_partition"] = business_day
        land_and_gate(wh, INBOUND[obj_name], rows, run_id=run_id, batch="read_back",
                      source_label=f"erp_db:{target} (read back after publish)")
        total += len(rows)
    return total


def json_key(payload: str, key: str) -> str:
    import json

    return json.loads(payload)[key]


def _restricted(p: Plan, engine, only_deals: Collection[str] | None, create_customers: bool) -> tuple[Plan, list[str]]:
    """The plan's own decisions (orders, holds, approvals) for `only_deals` only. Without
    `create_customers` no ERP customer is created: a deal whose order needs a customer the ERP
    does not have yet is left out (for the night, whose golden customer is rebuilt from the day's
    CRM and ERP and decides whether that customer is new). Returns the plan and the deals left out."""
    wanted = None if only_deals is None else {str(d) for d in only_deals}
    keep = lambda w: wanted is None or w.business_key in wanted  # noqa: E731
    out = Plan(not_eligible_before_golive=p.not_eligible_before_golive,
               orders=[w for w in p.orders if keep(w)], held=[(w, r) for w, r in p.held if keep(w)],
               awaiting_approval=[(w, r) for w, r in p.awaiting_approval if keep(w)])
    if create_customers:
        needed = {w.payload.get("customer_number") for w in out.orders + [w for w, _ in out.held + out.awaiting_approval]}
        out.customers = [c for c in p.customers if c.payload["customer_number"] in needed]
        return out, []
    import sqlalchemy as sa

    from trueup.connectors.erp_schema import customers as t_customers

    with engine.connect() as conn:
        known = {r[0] for r in conn.execute(sa.select(t_customers.c.customer_number))}
    missing = lambda w: w.payload.get("customer_number") is not None and w.payload["customer_number"] not in known  # noqa: E731
    later = sorted({w.business_key for w in out.orders if missing(w)}
                   | {w.business_key for w, _ in out.held + out.awaiting_approval if missing(w)})
    out.orders = [w for w in out.orders if not missing(w)]
    out.held = [(w, r) for w, r in out.held if not missing(w)]
    out.awaiting_approval = [(w, r) for w, r in out.awaiting_approval if not missing(w)]
    return out, later


def publish(wh: Warehouse, engine, client, *, home: Path, through: dt.date, publish_from: dt.date,
            reporting_currency: str, run_id: str, dry_run: bool = False, tz: str = "UTC",
            first_day: dt.date | None = None,
            approval_threshold: float = DEFAULT_APPROVAL_THRESHOLD, correlation_id: str | None = None,
            crm_writebacks: bool = True, alert_after: dt.timedelta = dt.timedelta(hours=24),
            only_deals: Collection[str] | None = None, create_customers: bool = True, financials: bool = True,
            clock: Callable[[], dt.datetime] | None = None, nightly_at: dt.time = NIGHTLY_AT) -> PublishSummary:
    """The nightly pass by default. The intraday path narrows it — `only_deals` (the plan's decisions
    for those deals only), `create_customers=False` (see `_restricted`), `financials=False` (the
    receivables reach the CRM at night, after the ERP export) — and gives `clock`, the business
    clock (naive UTC) its writes are stamped with instead of the night they belong to. `nightly_at`:
    when a night starts (TRUEUP_NIGHTLY_AT), the business clock of a night's writes."""
    s = PublishSummary(dry_run=dry_run)
    day = through.isoformat()
    with publish_lock(home, wh, owner=f"run {run_id}"):
        if not dry_run:
            for obj in ("customers", "sales_orders"):
                s.resolved_from_earlier_runs += erp_writer.resolve_pending(wh, engine, obj, run_id)
        p = build_plan(wh, engine, publish_from=publish_from, through=through, reporting_currency=reporting_currency,
                       approval_threshold=approval_threshold, approved=approvals(wh), released=releases(wh))
        if only_deals is not None or not create_customers:
            p, s.left_for_nightly = _restricted(p, engine, only_deals, create_customers)
        s.before_golive = p.not_eligible_before_golive
        customers, qc = _outbound_check(wh, p.customers, "erp_customers", day, run_id, dry_run)
        orders, qo = _outbound_check(wh, p.orders, "erp_sales_orders", day, run_id, dry_run)
        s.quarantined = qc + qo
        s.held = [(w.business_key, why) for w, why in p.held]
        s.awaiting_approval = [(w.idempotency_key, why) for w, why in p.awaiting_approval]
        if dry_run:
            s.customers_created, s.orders_created = len(customers), len(orders)
            s.sample = [w.payload for w in orders[:5]]
            # what the ledger would pass on (`plan`) and the ERP does not have yet (`send`)
            s.would_send = erp_writer.not_in_erp(engine, still_to_send(wh, customers + orders))
            s.would_hold = [(w, "held", why) for w, why in p.held] + [
                (w, "awaiting_approval", why) for w, why in p.awaiting_approval]
            return s
        for why in {r for _, r in p.held}:
            plan(wh, [w for w, r in p.held if r == why], run_id, state="held", hold_reason=why,
                 correlation_id=correlation_id, business_date=day)
        for w, why in p.awaiting_approval:
            plan(wh, [w], run_id, state="awaiting_approval", hold_reason=why, correlation_id=correlation_id,
                 business_date=day)
        to_send = plan(wh, customers, run_id, correlation_id=correlation_id, business_date=day)
        sent = erp_writer.send(wh, engine, to_send, run_id)
        s.customers_created, s.rejected = sent["confirmed"], sent["rejected"]
        to_send = plan(wh, orders, run_id, correlation_id=correlation_id, business_date=day)
        # approved writes wait in the ledger as `planned` from an earlier run
        sent = erp_writer.send(wh, engine, to_send, run_id)
        s.orders_created, s.rejected = sent["confirmed"], s.rejected + sent["rejected"]
        stamp_business_time(wh, run_id, first_day or through, through, tz, at=clock() if clock else None,
                            nightly_at=nightly_at)
        land_confirmed_writes(wh, engine, tz, run_id, day)
        if crm_writebacks and client is not None:
            down = None   # the CRM unreachable (after the client's retries): every write waits for a later run
            for obj in ("deals", "companies"):
                try:
                    s.resolved_from_earlier_runs += crm_writer.resolve_pending_crm(wh, client, obj, run_id)
                except SyncError as exc:
                    if exc.error_class != "transient":
                        raise
                    down = exc
                    break
            backs = crm_writer.writeback_writes(wh, "sales_orders") + crm_writer.writeback_writes(wh, "customers")
            to_send = plan(wh, backs, run_id, correlation_id=correlation_id, business_date=day)
            out = crm_writer.send_crm(wh, client, to_send, run_id, down=down)
            s.crm_updates, s.rejected, s.unknown = out["confirmed"], s.rejected + out["rejected"], out["unknown"]
            s.retry_later += out["deferred"]
            if financials:
                # receivables reach the CRM; an unchanged payload is skipped by the ledger
                to_send = plan(wh, financial_writes(wh, through), run_id, correlation_id=correlation_id,
                               business_date=day)
                out = crm_writer.send_crm(wh, client, to_send, run_id, down=down or out.get("down"))
                s.crm_financials = out["confirmed"]
                s.rejected, s.unknown = s.rejected + out["rejected"], s.unknown + out["unknown"]
                s.retry_later += out["deferred"]
        # the business time of each write this run confirmed (the night it belongs to, or the moment)
        stamp_business_time(wh, run_id, first_day or through, through, tz, at=clock() if clock else None,
                            nightly_at=nightly_at)
        s.failing_too_long = failing_too_long(wh, alert_after).astype(str).to_dict("records")
    return s
