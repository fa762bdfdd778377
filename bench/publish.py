"""Publishing benchmark: 100k ERP orders and 100k CRM write-backs through the platform's writers.

    python -m bench publish                                  # 100k orders + 100k CRM updates
    python -m bench publish --orders 2000 --crm-updates 2000 # quick

What is timed (each pass runs in its own interpreter, so its peak RSS is its own; the clock
starts after imports and after the writes are built):

ERP pass — the orders half of ``trueup.assets.publish.run.publish`` (the function the Dagster asset
calls), fed synthetic writes instead of ``build_plan``'s output:
  1. ``erp_writer.resolve_pending(wh, engine, "sales_orders", run_id)``
  2. ``ledger.plan(wh, writes, run_id, business_date=day)``   → ``planned`` rows in ops.sor_writes
  3. ``erp_writer.send(wh, engine, to_send, run_id)``         → ``sent`` → ERP insert → ``confirmed``
The writes are ``trueup.assets.publish.plan._order_write`` for N synthetic closed-won deals (ids
20000001…, idempotency key ``erp-order:crm-deal:<id>``, order number ``SO-8<id>``) of
existing ERP customers ``C8<company id>`` (one per 20 orders, inserted untimed beforehand,
as if the ERP already knew them). Not timed (not called): ``build_plan`` (reading validated
deals / the ERP), the outbound contract check and ``land_confirmed_writes``.

CRM pass — the write-back half of ``publish``, against a sandbox CRM process on 127.0.0.1
set to HubSpot's limits (100 requests per rolling 10 s per token, search 5/s) through the
real ``HubSpotClient`` with its defaults:
  1. ``crm_writer.resolve_pending_crm(wh, client, "deals", run_id)``
  2. ``crm_writer.writeback_writes(wh, "sales_orders")``   (one update per confirmed ERP order)
  3. ``ledger.plan(...)`` and ``crm_writer.send_crm(wh, client, to_send, run_id)``
     → batch updates of 100 deals (``erp_order_number``), ledger ``sent`` → ``confirmed``.
The N deals are seeded into the sandbox store with ``CrmStore.load_records`` (untimed) before
the server starts. With ``--crm-updates`` < ``--orders`` the first write-backs by deal id are
sent (the only step not in ``publish``: a sort and a slice). Company write-backs and the
receivables upsert (``financial_writes``) are not part of it.

Re-run: the same pass again (same writes, new run id); it must write nothing — 0 ledger rows
planned, 0 ERP rows, 0 CRM requests — and its time is reported.

Floors, measured in the same run:
  * ERP: a fresh SQLite ERP made by ``trueup.connectors.erp_schema`` (same constraints, foreign keys
    on, WAL; the same customers inserted untimed) and one transaction of DB-API
    ``executemany`` INSERT of the same N order rows (values pre-converted untimed to what
    SQLAlchemy stores). Also reported, as a second reference: the writer's own SQLAlchemy Core
    ``sales_orders.insert()`` of all N rows in one transaction (no ledger, no batching).
    Afterwards the floor and platform ERP tables must hold identical rows (bar timestamps).
  * CRM: (a) the physical bound of the API — 100 records per batch request × 10 requests/s
    (HubSpot's 100 per 10 s) = 1,000 records/s; (b) the sandbox store's own write of the same
    updates without HTTP: ``CrmStore.api_batch_update`` (the code the server runs for every
    batch/update request: lookup, validation, unique-value check, JSON merge) with all N inputs
    in one call = one SQLite transaction, on a second store seeded identically.

Generated data lives in a temporary TRUEUP_HOME (/tmp/trueup-bench-*), deleted at the end
(``--keep`` keeps it). Results: a table on stdout and JSON in bench/results/.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Timer, status_mb, sandbox_admin, text_table

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
MARK = "BENCH_RESULT "
PROGRESS = "BENCH_PROGRESS "

DAY = dt.date(2026, 10, 1)          # business date of the publish
FIRST_DEAL_ID = 20_000_001
FIRST_COMPANY_ID = 300_001
ORDERS_PER_CUSTOMER = 20
CURRENCIES = ("USD", "EUR", "GBP", "CHF")
COUNTRIES = ("US", "DE", "GB", "CH")

# HubSpot's published limits the sandbox is set to (private app, per token)
CRM_LIMIT_10S = 100
CRM_SEARCH_PER_S = 5
CRM_BATCH = 100
CRM_BOUND_PER_S = CRM_BATCH * CRM_LIMIT_10S / 10      # 1,000 records/s

# environment that could point a child at a real system: never inherited
_FOREIGN_ENV = ("TRUEUP_WAREHOUSE_URL", "TRUEUP_ERP_URL", "TRUEUP_CRM_BASE_URL", "TRUEUP_CRM_TOKEN",
                "TRUEUP_LANDING_DIR", "DAGSTER_HOME", "TRUEUP_ALERT_WEBHOOK_URL")


# ----------------------------------------------------------------------------- helpers
def _paths(home: Path) -> dict[str, Path]:
    return {"warehouse": home / "warehouse.duckdb", "erp": home / "sandbox" / "erp.sqlite",
            "crm": home / "sandbox" / "crm.sqlite", "erp_floor": home / "floor" / "erp_floor.sqlite",
            "erp_floor_sa": home / "floor" / "erp_floor_sqlalchemy.sqlite",
            "crm_floor": home / "floor" / "crm_floor.sqlite", "token": home / "sandbox" / "crm_token",
            "port": home / "sandbox" / "crm.port", "crm_log": home / "sandbox" / "crm.log"}


def _warehouse(home: Path):
    from trueup.connectors.warehouse import Warehouse

    return Warehouse(f"duckdb:///{_paths(home)['warehouse']}")


def _erp_engine(path: Path):
    from trueup.connectors.erp_schema import make_erp_engine

    return make_erp_engine(f"sqlite:///{path}")


def _progress(msg: str) -> None:
    print(PROGRESS + msg, flush=True)


# ============================================================================ synthetic input
def deals_frame(n: int):
    """N closed-won deals as validated.crm_deals_current holds them (text), deterministic."""
    import numpy as np
    import pandas as pd

    i = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(20261001)
    cents = rng.integers(1_000, 5_000_000, n)                 # 10.00 … 49,999.99
    n_cust = max(1, -(-n // ORDERS_PER_CUSTOMER))
    close = np.datetime64(DAY.isoformat()) - (i % 30).astype("timedelta64[D]")
    return pd.DataFrame({
        "id": pd.Series(FIRST_DEAL_ID + i).astype(str),
        "amount": (pd.Series(cents // 100).astype(str) + "." + pd.Series(cents % 100).astype(str).str.zfill(2)),
        "deal_currency_code": pd.Series(np.array(CURRENCIES)[i % len(CURRENCIES)]),
        "close_date": pd.Series(close.astype("datetime64[D]").astype(object)),   # datetime.date
        "company_id": pd.Series(FIRST_COMPANY_ID + (i % n_cust)).astype(str),
    })


def customer_rows(deals) -> list[dict]:
    """The ERP customers the orders belong to (inserted untimed, in every ERP database)."""
    from trueup.assets.publish.plan import customer_number_for

    at = dt.datetime(2026, 9, 1)
    comp = sorted(set(deals["company_id"]), key=int)
    return [{"customer_number": customer_number_for(c), "name": f"Bench Customer {c}",
             "country": COUNTRIES[int(c) % len(COUNTRIES)], "currency": CURRENCIES[int(c) % len(CURRENCIES)],
             "crm_company_id": c, "credit_limit": "50000.00", "created_at": at, "updated_at": at} for c in comp]


def order_writes(n: int) -> list:
    """The platform's own order writes (``plan._order_write``) for N synthetic deals."""
    from trueup.assets.publish.plan import _order_write, customer_number_for

    return [_order_write(d, customer_number_for(d.company_id)) for d in deals_frame(n).itertuples(index=False)]


class _Instrument:
    """Wraps a function in a module namespace to count its calls / rows and time (measurement
    only; the call itself is unchanged). Optionally reports progress on confirmed rows."""

    def __init__(self, module, name: str, progress_total: int = 0, label: str = "") -> None:
        self.module, self.name, self.orig = module, name, getattr(module, name)
        self.calls = self.rows = 0
        self.seconds = 0.0
        self.by_state: dict[str, dict] = {}
        self.progress_total, self.label = progress_total, label
        self.confirmed = 0
        self.t0 = time.perf_counter()
        self.last = self.t0
        self.first_confirmed: float | None = None
        setattr(module, name, self)

    def __call__(self, wh, write_ids, state, *a, **kw):
        t = time.perf_counter()
        try:
            return self.orig(wh, write_ids, state, *a, **kw)
        finally:
            dt_ = time.perf_counter() - t
            self.calls += 1
            self.rows += len(write_ids)
            self.seconds += dt_
            s = self.by_state.setdefault(state, {"calls": 0, "rows": 0, "seconds": 0.0})
            s["calls"] += 1
            s["rows"] += len(write_ids)
            s["seconds"] += dt_
            now = time.perf_counter()
            if state == "confirmed":
                self.confirmed += len(write_ids)
                self.first_confirmed = self.first_confirmed or now
            if self.progress_total and now - self.last >= 30:
                self.last = now
                done = self.confirmed
                rate = done / (now - self.first_confirmed) if done and now > self.first_confirmed else 0.0
                eta = f"ETA ~{(self.progress_total - done) / rate:,.0f}s; " if rate else ""
                _progress(f"{self.label}: {done:,}/{self.progress_total:,} confirmed after {now - self.t0:,.0f}s "
                          f"({eta}ledger set_state {self.seconds:,.0f}s in {self.calls:,} calls)")

    def restore(self) -> None:
        setattr(self.module, self.name, self.orig)

    def report(self) -> dict:
        return {"calls": self.calls, "rows": self.rows, "seconds": round(self.seconds, 3),
                "by_state": {k: {**v, "seconds": round(v["seconds"], 3)} for k, v in self.by_state.items()}}


# ============================================================================ steps (run in subprocesses)
def step_setup(home: Path, a: dict) -> dict:
    """Untimed: ERP databases with the customers, the warehouse ledger, the CRM stores with the deals."""
    import numpy as np
    import pandas as pd

    from trueup.assets.publish.ledger import ensure_ledger
    from trueup.connectors.erp_schema import create_erp_schema
    from trueup.connectors.erp_schema import customers as t_customers
    from trueup.sandbox.crm.store import CrmStore

    n = int(a["orders"])
    p = _paths(home)
    for d in ("sandbox", "floor"):
        (home / d).mkdir(parents=True, exist_ok=True)
    out: dict = {}
    t = Timer()
    deals = deals_frame(n)
    custs = customer_rows(deals)
    for key in ("erp", "erp_floor", "erp_floor_sa"):
        eng = _erp_engine(p[key])
        create_erp_schema(eng)
        with eng.begin() as conn:
            conn.execute(t_customers.insert(), custs)
        eng.dispose()
    out["erp_customers"] = len(custs)
    out["erp_setup_s"] = round(t(), 2)
    ensure_ledger(_warehouse(home))

    # the CRM: the deals the write-backs will update, as the generator seeds them (no order number yet)
    t = Timer()
    base_ms = int(dt.datetime.combine(DAY, dt.time(), tzinfo=dt.timezone.utc).timestamp() * 1000)
    ids = deals["id"].astype(np.int64)
    crm = pd.DataFrame({
        "id": ids, "created_ms": base_ms - 40 * 86_400_000 + np.arange(n, dtype=np.int64),
        "updated_ms": base_ms - 86_400_000 + np.arange(n, dtype=np.int64),
        "company_id": deals["company_id"].astype(np.int64),
        "dealname": "Bench deal " + deals["id"], "amount": deals["amount"],
        "deal_currency_code": deals["deal_currency_code"], "dealstage": "closedwon", "pipeline": "default",
        "closedate": deals["close_date"].astype(str) + "T12:00:00.000Z",
    })
    for key in ("crm", "crm_floor"):
        store = CrmStore(p[key])
        store.load_records("deals", crm)
        out[f"{key}_deals"] = store.count("deals")
        store.close()
    out["crm_seed_s"] = round(t(), 2)
    return out


def _erp_state(home: Path, n: int) -> dict:
    """What the ERP and the ledger hold for the orders (untimed checks)."""
    import sqlalchemy as sa

    p = _paths(home)
    eng = _erp_engine(p["erp"])
    with eng.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT count(*), count(DISTINCT order_number), count(DISTINCT crm_deal_id), max(updated_at), "
            "sum(source = 'integration'), sum(order_number = 'SO-8' || crm_deal_id) FROM sales_orders")).one()
    eng.dispose()
    wh = _warehouse(home)
    led = wh.query_df("SELECT state, count(*) AS n, count(DISTINCT idempotency_key) AS keys, "
                      "sum(attempts) AS attempts FROM ops.sor_writes WHERE target_system = 'erp' AND "
                      "target_object = 'sales_orders' GROUP BY state")
    by_state = {r.state: {"rows": int(r.n), "keys": int(r.keys), "attempts": int(r.attempts)}
                for r in led.itertuples()}
    # every confirmed ledger entry has its ERP row and vice versa (keys compared, not counts)
    ledger_keys = set(wh.query_df("SELECT business_key FROM ops.sor_writes WHERE target_system = 'erp' AND "
                                  "target_object = 'sales_orders' AND state = 'confirmed'")["business_key"])
    eng = _erp_engine(p["erp"])
    with eng.connect() as conn:
        erp_keys = {r[0] for r in conn.execute(sa.text("SELECT crm_deal_id FROM sales_orders"))}
    eng.dispose()
    expected = {str(FIRST_DEAL_ID + i) for i in range(n)}
    return {"erp_orders": int(row[0]), "erp_distinct_order_numbers": int(row[1]),
            "erp_distinct_deal_ids": int(row[2]), "erp_max_updated_at": str(row[3]),
            "erp_integration_rows": int(row[4] or 0), "erp_order_number_matches_deal": int(row[5] or 0),
            "ledger_by_state": by_state,
            "ledger_rows_total": int(wh.scalar("SELECT count(*) FROM ops.sor_writes")),
            "ledger_confirmed_equals_erp_keys": ledger_keys == erp_keys,
            "erp_keys_equal_expected": erp_keys == expected}


def step_erp_publish(home: Path, a: dict) -> dict:
    """Timed: resolve_pending + ledger.plan + erp_writer.send for the N order writes."""
    import trueup.assets.publish.erp_writer as erp_writer
    from trueup.assets.publish import ledger

    n, run_id = int(a["orders"]), a["run_id"]
    p = _paths(home)
    wh, engine = _warehouse(home), _erp_engine(p["erp"])
    t = Timer()
    writes = order_writes(n)
    out: dict = {"build_writes_s": round(t(), 3), "writes": len(writes)}
    before = _erp_state(home, n) if a.get("rerun") else None
    inst = _Instrument(erp_writer, "set_state", progress_total=n if not a.get("rerun") else 0, label="erp")
    inserts = {"calls": 0, "seconds": 0.0}
    real_insert = erp_writer._insert

    def timed_insert(*args):     # on the writer's insert thread, overlapping the ledger's transitions
        t0 = time.perf_counter()
        try:
            return real_insert(*args)
        finally:
            inserts["calls"] += 1
            inserts["seconds"] += time.perf_counter() - t0

    erp_writer._insert = timed_insert
    # held open as the publish step holds it (assets/asset_run.recorded_run): each ledger
    # transaction joins the open database instead of opening the file again
    with wh.held_open():
        try:
            total = Timer()
            t = Timer()
            out["resolved_from_earlier_runs"] = erp_writer.resolve_pending(wh, engine, "sales_orders", run_id)
            out["resolve_s"] = t()
            t = Timer()
            to_send = ledger.plan(wh, writes, run_id, business_date=DAY.isoformat())
            out["plan_s"] = t()
            out["to_send"] = len(to_send)
            t = Timer()
            sent = erp_writer.send(wh, engine, to_send, run_id)
            out["send_s"] = t()
            out["seconds"] = total()
        finally:
            inst.restore()
            erp_writer._insert = real_insert
    out["sent"] = sent
    out["set_state"] = inst.report()
    # resolve_pending's own set_state calls are in the same counter
    out["send_ledger_s"] = inst.seconds
    out["erp_inserts"] = {"calls": inserts["calls"], "seconds": round(inserts["seconds"], 3)}
    engine.dispose()
    out["state"] = _erp_state(home, n)
    if before is not None:
        out["state_before"] = before
    return out


def _floor_tuples(writes) -> tuple[list[str], list[tuple]]:
    """The writer's rows (``erp_writer._row``), converted to what SQLAlchemy stores in SQLite."""
    from trueup.assets.publish.erp_writer import _row
    from trueup.connectors.erp_schema import to_money

    at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows = [_row("sales_orders", w.payload, at) for w in writes]
    cols = list(rows[0])
    stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f")

    def conv(c, v):
        if c == "order_date":
            return v.isoformat()
        if c == "total_amount":
            return format(to_money(v), "f")
        if c in ("created_at", "updated_at"):
            return stamp
        return v

    return cols, [tuple(conv(c, r[c]) for c in cols) for r in rows]


def step_erp_floor(home: Path, a: dict) -> dict:
    """Timed: one transaction of DB-API executemany INSERT of the same rows into a fresh ERP;
    then (separately) the SQLAlchemy Core insert of all rows in one transaction into another."""
    import sqlalchemy as sa

    from trueup.assets.publish.erp_writer import _row
    from trueup.connectors.erp_schema import sales_orders as t_orders

    n = int(a["orders"])
    p = _paths(home)
    writes = order_writes(n)
    cols, tuples = _floor_tuples(writes)
    out: dict = {"rows": len(tuples)}

    eng = _erp_engine(p["erp_floor"])
    raw = eng.raw_connection()
    try:
        cur = raw.cursor()
        sql = f"INSERT INTO sales_orders ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        t = Timer()
        cur.executemany(sql, tuples)        # the sqlite3 module opens one transaction before the first INSERT
        raw.commit()
        out["seconds"] = t()
        cur.close()
    finally:
        raw.close()
    eng.dispose()

    at = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows = [_row("sales_orders", w.payload, at) for w in writes]
    eng = _erp_engine(p["erp_floor_sa"])
    t = Timer()
    with eng.begin() as conn:
        conn.execute(t_orders.insert(), rows)
    out["sqlalchemy_one_txn_s"] = t()
    eng.dispose()

    # the floor databases hold exactly the rows the platform wrote (bar created_at/updated_at)
    same = ("order_number, customer_number, crm_deal_id, order_date, currency, total_amount, status, source")
    eng = _erp_engine(p["erp_floor"])
    with eng.connect() as conn:
        conn.execute(sa.text(f"ATTACH DATABASE '{p['erp']}' AS plat"))
        conn.execute(sa.text(f"ATTACH DATABASE '{p['erp_floor_sa']}' AS fsa"))
        q = lambda x, y: conn.execute(sa.text(  # noqa: E731
            f"SELECT count(*) FROM (SELECT {same} FROM {x}.sales_orders EXCEPT SELECT {same} FROM {y}.sales_orders)"
        )).scalar()
        out["floor_rows"] = conn.execute(sa.text("SELECT count(*) FROM main.sales_orders")).scalar()
        out["floor_sa_rows"] = conn.execute(sa.text("SELECT count(*) FROM fsa.sales_orders")).scalar()
        out["rows_differing_from_platform"] = q("main", "plat") + q("plat", "main") + q("fsa", "plat") + \
            q("plat", "fsa")
    eng.dispose()
    return out


def _crm_counts(db: Path) -> dict:
    import sqlite3

    c = sqlite3.connect(str(db), timeout=30)       # reads only
    try:
        r = c.execute(
            "SELECT count(*), sum(json_extract(props, '$.erp_order_number') IS NOT NULL), "
            "sum(json_extract(props, '$.erp_order_number') = 'SO-8' || id), max(updated_ms) "
            "FROM records WHERE type = 'deals'").fetchone()
    finally:
        c.close()
    return {"deals": r[0], "with_order_number": int(r[1] or 0), "order_number_is_SO8_id": int(r[2] or 0),
            "max_updated_ms": r[3]}


def step_crm_publish(home: Path, a: dict) -> dict:
    """Timed: resolve_pending_crm + writeback_writes + ledger.plan + crm_writer.send_crm."""
    import trueup.assets.publish.crm_writer as crm_writer
    from trueup.assets.publish import ledger
    from trueup.connectors.hubspot import HubSpotClient

    n, run_id, base = int(a["crm_updates"]), a["run_id"], a["base_url"]
    p = _paths(home)
    token = p["token"].read_text().strip()
    wh = _warehouse(home)
    sandbox_admin(base, token, "POST", "/_sandbox/knobs", {"rate_limit_10s": CRM_LIMIT_10S,
                                                   "search_per_second": CRM_SEARCH_PER_S})  # resets the limiter
    sandbox_admin(base, token, "POST", "/_sandbox/stats/reset")
    client = HubSpotClient(base, token)
    out: dict = {"writes": n}
    before = _crm_counts(p["crm"])
    inst = _Instrument(crm_writer, "set_state", progress_total=n if not a.get("rerun") else 0, label="crm")
    http = {"calls": 0, "seconds": 0.0}
    orig_update = client.batch_update

    def timed_update(*args, **kw):   # measurement only
        t0 = time.perf_counter()
        try:
            return orig_update(*args, **kw)
        finally:
            http["calls"] += 1
            http["seconds"] += time.perf_counter() - t0

    client.batch_update = timed_update
    with wh.held_open():   # as the publish step holds it (see step_erp_publish)
        try:
            total = Timer()
            t = Timer()
            out["resolved_from_earlier_runs"] = crm_writer.resolve_pending_crm(wh, client, "deals", run_id)
            out["resolve_s"] = t()
            t = Timer()
            backs = crm_writer.writeback_writes(wh, "sales_orders")
            out["writeback_writes_found"] = len(backs)
            # a subset: the first n deals by id, the same on a re-run (where writeback_writes
            # leaves out the ones already written back)
            backs = [w for w in backs if int(w.payload["id"]) < FIRST_DEAL_ID + n]
            out["writeback_writes_s"] = t()
            t = Timer()
            to_send = ledger.plan(wh, backs, run_id, business_date=DAY.isoformat())
            out["plan_s"] = t()
            out["to_send"] = len(to_send)
            t = Timer()
            sent = crm_writer.send_crm(wh, client, to_send, run_id)
            out["send_s"] = t()
            out["seconds"] = total()
        finally:
            inst.restore()
    out["sent"] = sent
    out["set_state"] = inst.report()
    out["http_batch_update"] = {"calls": http["calls"], "seconds": round(http["seconds"], 3)}
    out["client_stats"] = client.stats.snapshot()
    client.close()
    server = sandbox_admin(base, token, "GET", "/_sandbox/stats")
    out["server"] = {"requests_total": server["requests_total"], "requests_by_kind": server["requests_by_kind"],
                     "requests_by_status": server["requests_by_status"],
                     "rate_limited_by_policy": server["rate_limited_by_policy"]}
    out["crm_before"], out["crm_after"] = before, _crm_counts(p["crm"])
    led = wh.query_df("SELECT state, count(*) AS n, sum(attempts) AS attempts FROM ops.sor_writes "
                      "WHERE target_system = 'crm' AND target_object = 'deals' GROUP BY state")
    out["ledger_by_state"] = {r.state: {"rows": int(r.n), "attempts": int(r.attempts)} for r in led.itertuples()}
    out["ledger_rows_total"] = int(wh.scalar("SELECT count(*) FROM ops.sor_writes"))
    return out


def step_crm_floor(home: Path, a: dict) -> dict:
    """Timed: CrmStore.api_batch_update of the same N updates in one call (one SQLite transaction)."""
    import sqlite3

    from trueup.assets.publish.plan import order_number_for
    from trueup.sandbox.crm.store import CrmStore, now_ms

    n = int(a["crm_updates"])
    p = _paths(home)
    inputs = [(str(FIRST_DEAL_ID + i), {"erp_order_number": order_number_for(str(FIRST_DEAL_ID + i))})
              for i in range(n)]
    store = CrmStore(p["crm_floor"])
    stamp = now_ms()
    t = Timer()
    results, errors = store.api_batch_update("deals", inputs, None, stamp, stamp)
    secs = t()
    store.close()
    out = {"rows": n, "seconds": secs, "results": len(results), "errors": len(errors),
           "after": _crm_counts(p["crm_floor"])}
    # the floor store and the platform's store hold the same order numbers on the same deals
    c = sqlite3.connect(str(p["crm_floor"]), timeout=30)       # reads only
    try:
        c.execute("ATTACH DATABASE ? AS plat", (str(p["crm"]),))
        out["deals_differing_from_platform"] = c.execute(
            "SELECT count(*) FROM records f JOIN plat.records q ON q.type = f.type AND q.id = f.id "
            "WHERE f.type = 'deals' AND json_extract(f.props, '$.erp_order_number') IS NOT "
            "json_extract(q.props, '$.erp_order_number')").fetchone()[0]
    finally:
        c.close()
    return out


STEPS = {"setup": step_setup, "erp_publish": step_erp_publish, "erp_floor": step_erp_floor,
         "crm_publish": step_crm_publish, "crm_floor": step_crm_floor}


def run_step_child(name: str, home: str, args_json: str) -> int:
    """Entry point of a step subprocess: run it, print its result as one JSON line."""
    result = STEPS[name](Path(home), json.loads(args_json))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(MARK + json.dumps(result, default=str), flush=True)
    return 0


def _child_env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    env.update(TRUEUP_HOME=str(home), DO_NOT_TRACK="1", DAGSTER_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    return env


def run_step(name: str, home: Path, log, watch: subprocess.Popen | None = None, **args) -> dict:
    """Run one step in a fresh interpreter so its peak RSS is its own; echo its progress lines.
    With `watch` (the sandbox CRM process), the step is ended at once if that process dies:
    the client would otherwise retry a refused connection for every remaining batch."""
    t = Timer()
    err = home / f"step-{name}.stderr"
    died: list[int] = []
    with open(err, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "bench", "publish", "_step", name, str(home), json.dumps(args)],
                                cwd=REPO, env=_child_env(home), stdout=subprocess.PIPE, stderr=fh, text=True)
        result, tail = None, []

        def watchdog() -> None:
            while proc.poll() is None:
                if watch is not None and watch.poll() is not None:
                    died.append(watch.returncode)
                    proc.kill()
                    return
                time.sleep(0.5)

        if watch is not None:
            threading.Thread(target=watchdog, daemon=True).start()
        try:
            for line in proc.stdout:
                if line.startswith(MARK):
                    result = json.loads(line[len(MARK):])
                elif line.startswith(PROGRESS):
                    log("  … " + line[len(PROGRESS):].rstrip())
                else:
                    tail = (tail + [line])[-50:]
            rc = proc.wait()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    if died:
        raise RuntimeError(f"the sandbox CRM process (pid {watch.pid}) ended with status {died[0]} during step "
                           f"{name} — stopped by something outside the benchmark? Step aborted.")
    if rc != 0 or result is None:
        sys.stderr.write("".join(tail) + err.read_text(errors="replace")[-8000:])
        raise RuntimeError(f"bench step {name} {args} failed (exit {rc})")
    result["process_wall_s"] = round(t(), 2)
    return result


# ============================================================================ the sandbox CRM process
def start_sandbox(home: Path) -> tuple[subprocess.Popen, str]:
    p = _paths(home)
    token = "bench-" + os.urandom(12).hex()
    p["token"].write_text(token)
    env = dict(_child_env(home), TRUEUP_SANDBOX_RATE_LIMIT_10S=str(CRM_LIMIT_10S),
               TRUEUP_SANDBOX_SEARCH_PER_SECOND=str(CRM_SEARCH_PER_S))
    for k in [k for k in env if k.startswith("TRUEUP_SANDBOX_") and k not in (
            "TRUEUP_SANDBOX_RATE_LIMIT_10S", "TRUEUP_SANDBOX_SEARCH_PER_SECOND")]:
        del env[k]      # no fault knobs (latency, 5xx, drops) inherited from the caller's shell
    with open(p["crm_log"], "wb") as log_fh:      # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            [sys.executable, "-m", "trueup.sandbox.crm.server", "--db", str(p["crm"]), "--token-file", str(p["token"]),
             "--host", "127.0.0.1", "--port", "0", "--port-file", str(p["port"]), "--log-level", "WARNING"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log_fh,
        )
    deadline = time.time() + 30
    while not (p["port"].exists() and p["port"].read_text().strip()):
        if proc.poll() is not None or time.time() > deadline:
            stop_sandbox(proc)
            raise RuntimeError(f"sandbox CRM did not start: {p['crm_log'].read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{int(p['port'].read_text())}"


def stop_sandbox(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ============================================================================ checks and report
def _check(cond: bool, what: str, failures: list[str]) -> bool:
    if not cond:
        failures.append(what)
    return bool(cond)


def summarise(res: dict, orders: int, crm_n: int) -> dict:
    """Exactly-once checks and the headline figures."""
    f: list[str] = []
    ep, er, ef = res["erp"]["platform"], res["erp"]["rerun"], res["erp"]["floor"]
    st, rst = ep["state"], er["state"]
    conf = st["ledger_by_state"].get("confirmed", {})
    _check(ep["to_send"] == orders and ep["sent"] == {"confirmed": orders, "rejected": 0}, "erp: all planned+sent", f)
    _check(st["erp_orders"] == orders, f"erp: orders in the ERP == {orders}", f)
    _check(st["erp_distinct_order_numbers"] == orders and st["erp_distinct_deal_ids"] == orders,
           "erp: no duplicate order numbers / deal ids", f)
    _check(st["erp_keys_equal_expected"] and st["erp_order_number_matches_deal"] == orders,
           "erp: exactly the expected deals, SO-8<deal id>", f)
    _check(conf.get("rows") == orders and conf.get("keys") == orders and set(st["ledger_by_state"]) == {"confirmed"},
           f"erp: ledger confirmed == {orders}, nothing else", f)
    _check(conf.get("attempts") == orders, "erp: one send attempt per write", f)
    _check(st["ledger_confirmed_equals_erp_keys"], "erp: ledger confirmed keys == ERP rows", f)
    _check(er["to_send"] == 0 and er["sent"] == {"confirmed": 0, "rejected": 0}, "erp re-run: 0 writes", f)
    _check(rst["erp_orders"] == orders and rst["erp_max_updated_at"] == st["erp_max_updated_at"]
           and rst["ledger_rows_total"] == st["ledger_rows_total"]
           and rst["ledger_by_state"] == st["ledger_by_state"], "erp re-run: ERP and ledger unchanged", f)
    _check(ef["floor_rows"] == orders and ef["floor_sa_rows"] == orders and ef["rows_differing_from_platform"] == 0,
           "erp floor: same rows as the platform", f)
    out = {
        "erp_orders_in_erp": st["erp_orders"], "erp_ledger_confirmed": conf.get("rows", 0),
        "erp_platform_s": round(ep["seconds"], 3), "erp_platform_writes_per_s": round(orders / ep["seconds"], 1),
        "erp_floor_s": round(ef["seconds"], 3), "erp_floor_writes_per_s": round(orders / ef["seconds"], 1),
        "erp_ratio_platform_over_floor": round(ep["seconds"] / ef["seconds"], 1),
        "erp_floor_sqlalchemy_s": round(ef["sqlalchemy_one_txn_s"], 3),
        "erp_rerun_s": round(er["seconds"], 3), "erp_rerun_writes": er["sent"]["confirmed"] + er["to_send"],
        "erp_platform_peak_rss_mb": ep["peak_rss_mb"], "erp_floor_peak_rss_mb": ef["peak_rss_mb"],
    }
    crm = res.get("crm")
    if crm:
        cp, cr, cf = crm["platform"], crm["rerun"], crm["floor"]
        cconf = cp["ledger_by_state"].get("confirmed", {})
        _check(cp["to_send"] == crm_n and cp["sent"] == {"confirmed": crm_n, "rejected": 0, "unknown": 0, "deferred": 0, "down": None},
               "crm: all planned+confirmed", f)
        _check(cp["crm_after"]["order_number_is_SO8_id"] == crm_n and cp["crm_after"]["with_order_number"] == crm_n,
               f"crm: deals carrying their order number == {crm_n}", f)
        _check(cconf.get("rows") == crm_n and set(cp["ledger_by_state"]) == {"confirmed"}
               and cconf.get("attempts") == crm_n, f"crm: ledger confirmed == {crm_n}, one attempt each", f)
        _check(cr["to_send"] == 0 and cr["sent"] == {"confirmed": 0, "rejected": 0, "unknown": 0, "deferred": 0, "down": None}
               and cr["server"]["requests_total"] == 0, "crm re-run: 0 writes, 0 CRM requests", f)
        _check(cr["crm_after"] == cp["crm_after"] and cr["ledger_by_state"] == cp["ledger_by_state"],
               "crm re-run: CRM and ledger unchanged", f)
        _check(cf["results"] == crm_n and cf["errors"] == 0 and cf["deals_differing_from_platform"] == 0,
               "crm floor: same updates as the platform", f)
        at_bound = crm_n / CRM_BOUND_PER_S
        out.update({
            "crm_deals_updated": cp["crm_after"]["order_number_is_SO8_id"],
            "crm_ledger_confirmed": cconf.get("rows", 0),
            "crm_platform_s": round(cp["seconds"], 3), "crm_platform_writes_per_s": round(crm_n / cp["seconds"], 1),
            "crm_bound_writes_per_s": CRM_BOUND_PER_S, "crm_seconds_at_bound": round(at_bound, 1),
            "crm_pct_of_bound": round(100 * crm_n / cp["seconds"] / CRM_BOUND_PER_S, 1),
            "crm_ratio_platform_over_bound": round(cp["seconds"] / at_bound, 2),
            "crm_floor_s": round(cf["seconds"], 3), "crm_floor_writes_per_s": round(crm_n / cf["seconds"], 1),
            "crm_ratio_platform_over_floor": round(cp["seconds"] / cf["seconds"], 1),
            "crm_rerun_s": round(cr["seconds"], 3), "crm_rerun_writes": cr["sent"]["confirmed"] + cr["to_send"],
            "crm_rerun_requests": cr["server"]["requests_total"],
            "crm_platform_peak_rss_mb": cp["peak_rss_mb"], "crm_floor_peak_rss_mb": cf["peak_rss_mb"],
            "crm_server_peak_rss_mb": crm.get("server_peak_rss_mb"),
        })
    out["checks_failed"] = f
    out["exactly_once"] = not f
    return out


def render(result: dict) -> str:
    s = result["summary"]
    parts = [f"Trueup publishing benchmark — {result['started_at']}  ({result['machine']})",
             f"command: {result['command']}", ""]
    ep, er = result["erp"]["platform"], result["erp"]["rerun"]
    rows = [
        ["ERP orders: platform", f"{ep['to_send']:,}", f"{ep['seconds']:.2f}", f"{s['erp_platform_writes_per_s']:,}",
         ep["peak_rss_mb"], f"{s['erp_ratio_platform_over_floor']}x"],
        ["ERP orders: floor (executemany, 1 txn)", f"{result['erp']['floor']['rows']:,}", f"{s['erp_floor_s']:.2f}",
         f"{s['erp_floor_writes_per_s']:,}", result["erp"]["floor"]["peak_rss_mb"], "1.0x"],
        ["ERP orders: SQLAlchemy insert, 1 txn (ref.)", f"{result['erp']['floor']['rows']:,}",
         f"{s['erp_floor_sqlalchemy_s']:.2f}", f"{round(result['orders'] / s['erp_floor_sqlalchemy_s'], 1):,}", "",
         f"{s['erp_floor_sqlalchemy_s'] / s['erp_floor_s']:.1f}x"],
        ["ERP orders: re-run", f"{s['erp_rerun_writes']:,}", f"{s['erp_rerun_s']:.2f}", "-", er["peak_rss_mb"], "-"],
    ]
    if "crm" in result:
        cp, cr, cf = result["crm"]["platform"], result["crm"]["rerun"], result["crm"]["floor"]
        rows += [
            ["CRM write-backs: platform (HTTP)", f"{cp['to_send']:,}", f"{cp['seconds']:.2f}",
             f"{s['crm_platform_writes_per_s']:,}", cp["peak_rss_mb"], f"{s['crm_ratio_platform_over_floor']}x"],
            ["CRM: rate-limit bound (100 x 10 req/s)", f"{result['crm_updates']:,}", f"{s['crm_seconds_at_bound']:.2f}",
             f"{s['crm_bound_writes_per_s']:,.0f}", "", f"{s['crm_seconds_at_bound'] / s['crm_floor_s']:.1f}x"],
            ["CRM: floor (store.api_batch_update, 1 txn)", f"{cf['rows']:,}", f"{s['crm_floor_s']:.2f}",
             f"{s['crm_floor_writes_per_s']:,}", cf["peak_rss_mb"], "1.0x"],
            ["CRM write-backs: re-run", f"{s['crm_rerun_writes']:,}", f"{s['crm_rerun_s']:.2f}", "-", cr["peak_rss_mb"],
             "-"],
        ]
    parts.append(text_table(["pass", "writes", "seconds", "writes/s", "peak RSS MB", "vs floor"], rows))
    parts.append("")
    st = ep["set_state"]["by_state"]
    parts.append(f"ERP platform breakdown: resolve_pending {ep['resolve_s']:.2f}s, ledger.plan {ep['plan_s']:.2f}s, "
                 f"erp_writer.send {ep['send_s']:.2f}s (of which ledger set_state "
                 + ", ".join(f"{k} {v['seconds']:.1f}s/{v['calls']} calls" for k, v in st.items())
                 + f"; ERP inserts {ep['erp_inserts']['seconds']:.2f}s in {ep['erp_inserts']['calls']} transactions "
                 "on the insert thread, overlapping the ledger's)")
    if "crm" in result:
        st = cp["set_state"]["by_state"]
        parts.append(
            f"CRM platform breakdown: resolve_pending_crm {cp['resolve_s']:.2f}s, writeback_writes "
            f"{cp['writeback_writes_s']:.2f}s, ledger.plan {cp['plan_s']:.2f}s, send_crm {cp['send_s']:.2f}s (of which "
            f"HTTP batch_update {cp['http_batch_update']['seconds']:.1f}s in {cp['http_batch_update']['calls']} calls, "
            f"client throttle wait {cp['client_stats']['throttle_wait_seconds']:.1f}s, ledger set_state "
            + ", ".join(f"{k} {v['seconds']:.1f}s/{v['calls']} calls" for k, v in st.items()) + ")")
        parts.append(f"CRM requests: client {cp['client_stats']['requests']}, 429s "
                     f"{cp['client_stats']['responses_429_total']}; server by kind {cp['server']['requests_by_kind']}; "
                     f"platform = {s['crm_pct_of_bound']}% of the rate-limit bound "
                     f"({s['crm_ratio_platform_over_bound']}x its time); sandbox server peak RSS "
                     f"{s['crm_server_peak_rss_mb']} MB")
    parts.append("")
    parts.append(f"ERP orders in the ERP: {s['erp_orders_in_erp']:,}; ledger confirmed: {s['erp_ledger_confirmed']:,}"
                 + (f"; CRM deals updated: {s['crm_deals_updated']:,}; CRM ledger confirmed: "
                    f"{s['crm_ledger_confirmed']:,}" if "crm" in result else "")
                 + f"; re-run writes: ERP {s['erp_rerun_writes']}"
                 + (f", CRM {s['crm_rerun_writes']} ({s['crm_rerun_requests']} requests)" if "crm" in result else ""))
    parts.append("exactly-once checks: " + ("PASS" if s["exactly_once"] else "FAIL: " + "; ".join(s["checks_failed"])))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_step":
        return run_step_child(argv[1], argv[2], argv[3])
    ap = argparse.ArgumentParser(prog="python -m bench publish", description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=100_000, help="ERP sales orders to publish (100k)")
    ap.add_argument("--crm-updates", type=int, default=100_000,
                    help="CRM deal write-backs (≤ --orders: each follows a confirmed order; 0 skips the CRM part)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary TRUEUP_HOME")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--quiet", action="store_true", help="no progress lines (the table is still printed)")
    args = ap.parse_args(argv)
    if args.orders < 1:
        ap.error("--orders must be at least 1")
    if not 0 <= args.crm_updates <= args.orders:
        ap.error("--crm-updates must be between 0 and --orders: write-backs follow confirmed ERP orders")

    home = Path(tempfile.mkdtemp(prefix="trueup-bench-", dir="/tmp"))
    started = dt.datetime.now(dt.timezone.utc)
    result: dict = {
        "benchmark": "publish", "started_at": started.isoformat(timespec="seconds"),
        "command": "cd /work/main && .venv/bin/python -m bench publish " + " ".join(argv),
        "machine": f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB, "
                   f"Python {sys.version.split()[0]}, load avg {os.getloadavg()[0]:.1f} at start",
        "trueup_home": str(home), "orders": args.orders, "crm_updates": args.crm_updates,
        "crm_limits": {"rate_limit_10s": CRM_LIMIT_10S, "search_per_second": CRM_SEARCH_PER_S, "batch": CRM_BATCH},
    }

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, flush=True)

    def on_sigterm(*_):    # a terminated benchmark still stops its CRM and deletes its home (finally)
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() \
        else None
    server = None
    try:
        log(f"[setup] {args.orders:,} deals in two CRM stores, ERP customers in three ERP databases (untimed) …")
        result["setup"] = run_step("setup", home, log, orders=args.orders)
        log(f"[setup] done in {result['setup']['process_wall_s']}s")
        result["erp"] = {}
        log(f"[erp] publishing {args.orders:,} orders (resolve_pending + ledger.plan + erp_writer.send) …")
        ep = result["erp"]["platform"] = run_step("erp_publish", home, log, orders=args.orders, run_id="bench-1")
        log(f"[erp] {ep['sent']['confirmed']:,} confirmed in {ep['seconds']:.1f}s "
            f"({args.orders / ep['seconds']:,.0f} writes/s; plan {ep['plan_s']:.1f}s, send {ep['send_s']:.1f}s)")
        er = result["erp"]["rerun"] = run_step("erp_publish", home, log, orders=args.orders, run_id="bench-2",
                                               rerun=True)
        log(f"[erp] re-run: {er['to_send']} to send, {er['seconds']:.1f}s")
        ef = result["erp"]["floor"] = run_step("erp_floor", home, log, orders=args.orders)
        log(f"[erp] floor: {ef['rows']:,} rows in {ef['seconds']:.2f}s (SQLAlchemy one txn "
            f"{ef['sqlalchemy_one_txn_s']:.2f}s)")
        if args.crm_updates:
            server, base = start_sandbox(home)
            result["crm"] = {"base_url": base, "server_pid": server.pid}
            log(f"[crm] sandbox CRM on {base} ({CRM_LIMIT_10S}/10 s); writing back {args.crm_updates:,} order "
                f"numbers (at the bound ≥ {args.crm_updates / CRM_BOUND_PER_S:,.0f}s) …")
            cp = result["crm"]["platform"] = run_step("crm_publish", home, log, watch=server,
                                                      crm_updates=args.crm_updates, run_id="bench-1", base_url=base)
            log(f"[crm] {cp['sent']['confirmed']:,} confirmed in {cp['seconds']:.1f}s "
                f"({args.crm_updates / cp['seconds']:,.0f} writes/s)")
            cr = result["crm"]["rerun"] = run_step("crm_publish", home, log, watch=server,
                                                   crm_updates=args.crm_updates, run_id="bench-2", base_url=base,
                                                   rerun=True)
            log(f"[crm] re-run: {cr['to_send']} to send, {cr['server']['requests_total']} requests, "
                f"{cr['seconds']:.1f}s")
            result["crm"]["server_peak_rss_mb"] = status_mb("VmHWM", server.pid)
            stop_sandbox(server)
            server = None
            cf = result["crm"]["floor"] = run_step("crm_floor", home, log, crm_updates=args.crm_updates)
            log(f"[crm] floor: {cf['rows']:,} store updates in {cf['seconds']:.2f}s")
        result["summary"] = summarise(result, args.orders, args.crm_updates)
        result["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        text = render(result)
        print()
        print(text)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"publish-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        result["results_file"] = str(path)
        print(f"\nresults: {path}")
    finally:
        if server is not None:
            stop_sandbox(server)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0 if result.get("summary", {}).get("exactly_once") else 1
