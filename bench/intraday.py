"""Intraday benchmark: deals close won at a steady rate; seconds from close to confirmed ERP order.

    python -m bench intraday                      # one deal every 5 s for 5 min, sensor every 120 s
    python -m bench intraday --interval 60        # a shorter sensor interval
    python -m bench intraday --smoke              # a few deals in ~1 min (the test uses it)

Setup (untimed): a sandbox world of 14 business days (8 with --smoke) ending yesterday (generator seed 7, scale 1,
no drifted exports) in a temporary TRUEUP_HOME, its CRM served by a sandbox CRM process on
127.0.0.1 set to HubSpot's limits (100 requests per rolling 10 s per token; search 5/s, counted
apart), and Trueup's nightly runs over those days (one backfill run), so the warehouse, the golden
customer and the ERP are as the morning finds them.

Measured, in real time (today is a business day; the sensor and the runs use the wall clock, as in
production): a closer thread marks one open deal closed won every `--every` seconds for
`--duration` seconds, straight in the CRM's store (so the closes cost no API request: every
request the server counts is Trueup's); the sensor `intraday_closed_won_sensor` is evaluated every
`--interval` seconds on its own thread, as the daemon does; each run it requests is executed in
this process through the Dagster instance, one at a time (the pool business_day_writes), in the
order requested — as the daemon's queue would start them, minus the run process's start, which is
measured apart (`code location load`: a fresh interpreter importing the definitions). The deals
closed are of companies whose ERP customer exists and below the approval threshold: deals the
intraday path posts (the others wait for a person or the night by design; tests cover them).

Reported: p50/p95/max seconds from the close (the deal's CRM modification time) to the ledger's
`confirmed` ERP order (`ops.sor_writes.updated_at`), split into waiting for the sensor's next look,
waiting for the run to start, and the run; runs and their seconds; the CRM requests Trueup made
(server's count) against what the rate limit allows in the same time: non-search requests against
100 per 10 s, searches against 5 per second. Checks (exit 1 if any fails): every closed deal has
exactly one ERP order and one confirmed ledger write.

Results: a table on stdout and JSON in bench/results/intraday-<UTC time>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Timer, sandbox_admin, status_mb, text_table

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
MARK = "BENCH_RESULT "
PROGRESS = "BENCH_PROGRESS "

CRM_LIMIT_10S = 100          # HubSpot's private-app limit per token (the sandbox is set to it)
CRM_SEARCH_PER_S = 5
WORLD_DAYS = 14
SMOKE_WORLD_DAYS = 8          # --smoke (the test): enough history for a few deals to close
_FOREIGN_ENV = ("TRUEUP_WAREHOUSE_URL", "TRUEUP_ERP_URL", "TRUEUP_CRM_BASE_URL", "TRUEUP_CRM_TOKEN",
                "TRUEUP_LANDING_DIR", "DAGSTER_HOME", "TRUEUP_ALERT_WEBHOOK_URL", "TRUEUP_START_DATE",
                "TRUEUP_PUBLISH_FROM", "TRUEUP_TIMEZONE", "TRUEUP_INTRADAY", "TRUEUP_INTRADAY_INTERVAL_SECONDS")


def _progress(msg: str) -> None:
    print(PROGRESS + msg, flush=True)


def _pct(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1), linear between ranks; None for no values."""
    if not values:
        return None
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def _r(x: float | None, n: int = 1) -> float | None:
    return None if x is None else round(x, n)


# ============================================================================ the world (untimed)
def world_paths(home: Path):
    from trueup.sandbox.generator.world import WorldPaths

    root = home / "sandbox"
    return WorldPaths(root, f"sqlite:///{root / 'erp.sqlite'}", home / "landing")


def seed(home: Path, days: int, scale: float) -> dict:
    from trueup.sandbox.generator.config import WorldConfig
    from trueup.sandbox.generator.world import seed_world

    today = dt.datetime.now(dt.timezone.utc).date()
    cfg = WorldConfig(seed=7, scale=scale, start_date=today - dt.timedelta(days=days), days=days,
                      schema_drift_days=())
    paths = world_paths(home)
    paths.root.mkdir(parents=True, exist_ok=True)
    seed_world(paths, cfg)
    return {"start": cfg.start_date.isoformat(), "end": (today - dt.timedelta(days=1)).isoformat(),
            "golive": cfg.golive.isoformat(), "scale": scale, "days": days}


def candidates(home: Path, n: int) -> tuple[list[dict], int]:
    """Open deals (no injected defect) whose order goes to an ERP customer the ERP already has — the
    golden customer's link, else the platform's own `C8<company>` — i.e. deals the intraday path
    posts at once. Returns the first `n` (by id) and how many there are."""
    import sqlalchemy as sa

    from trueup.assets.publish.plan import customer_number_for
    from trueup.connectors.erp_schema import make_erp_engine
    from trueup.connectors.warehouse import Warehouse
    from trueup.orchestration.config import load_settings
    from trueup.sandbox.crm.store import CrmStore
    from trueup.sandbox.generator.world import read_defects

    paths = world_paths(home)
    wh = Warehouse(load_settings().warehouse_url)
    golden = wh.query_df("SELECT crm_company_id, erp_customer_number, match_method FROM marts.dim_customer "
                         "WHERE crm_company_id IS NOT NULL")
    wh.dispose()
    ambiguous = set(golden.loc[golden["match_method"] == "ambiguous", "crm_company_id"].astype(str))
    linked = golden.dropna(subset=["erp_customer_number"])
    xwalk = dict(zip(linked["crm_company_id"].astype(str), linked["erp_customer_number"]))
    engine = make_erp_engine(paths.erp_url)
    with engine.connect() as conn:
        known = {r[0] for r in conn.execute(sa.text("SELECT customer_number FROM customers"))}
    engine.dispose()
    bad = {str(d["business_key"]) for d in read_defects(paths)}
    store = CrmStore(paths.crm_db)
    deals = store.all_records("deals", archived=False)
    store.close()
    deals = deals[deals["company_id"].notna() & ~deals["id"].astype(str).isin(bad)
                  & ~deals["dealstage"].isin(["closedwon", "closedlost"])]
    company = deals["company_id"].astype("Int64").astype(str)
    ok = company.map(lambda c: c not in bad and c not in ambiguous
                     and xwalk.get(c, customer_number_for(c)) in known)
    deals = deals[ok.astype(bool)].sort_values("id")
    return [{"id": str(r.id), "created_ms": int(r.created_ms)} for r in deals.head(n).itertuples()], len(deals)


def close_won(home: Path, deal: dict, i: int) -> int:
    """Mark the deal closed won now, in the CRM's store (no API request); returns the close time (ms).
    Amounts are distinct and odd, below the approval threshold, so no manual order looks like them."""
    import pandas as pd

    from trueup.sandbox.crm.store import CrmStore

    now = dt.datetime.now(dt.timezone.utc)
    ms = int(now.timestamp() * 1000)
    store = CrmStore(world_paths(home).crm_db)
    try:
        store.load_records("deals", pd.DataFrame([{
            "id": int(deal["id"]), "created_ms": deal["created_ms"], "updated_ms": ms, "dealstage": "closedwon",
            "closedate": now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z", "amount": f"{12_345 + 101 * i}.37",
            "deal_currency_code": "USD"}]))
    finally:
        store.close()
    return ms


# ============================================================================ the measured child
def measured(home: Path, a: dict) -> dict:
    """Runs in a child interpreter with the world's environment: setup night, then the measured phase."""
    from dagster import DagsterInstance, RunRequest, SkipReason, build_sensor_context

    from trueup.connectors.warehouse import Warehouse
    from trueup.orchestration.config import load_settings
    from trueup.orchestration.definitions import build_definitions
    from trueup.orchestration.intraday import build_intraday_sensor
    from trueup.orchestration.resources import default_resources
    from trueup.orchestration.runner import open_instance, run_job

    base, token = a["base_url"], a["token"]
    settings = load_settings()
    out: dict = {}

    # --- setup: the nights of the world, without rate limits (untimed)
    sandbox_admin(base, token, "POST", "/_sandbox/knobs", {"rate_limit_10s": 0, "search_per_second": 0})
    t = Timer()
    night = run_job(settings, "nightly_sync", dt.date.fromisoformat(a["world"]["start"]),
                    dt.date.fromisoformat(a["world"]["end"]))
    if not night.success:
        raise RuntimeError(f"setup night failed: {night.error}")
    out["setup_night_s"] = round(t(), 1)
    deals, available = candidates(home, a["deals"])
    out["deals_available"] = available
    if len(deals) < a["deals"]:
        raise RuntimeError(f"the world has {available} open deals whose ERP customer exists; {a['deals']} asked: "
                           f"fewer or slower closes (--every, --duration), or a larger world (--scale)")
    _progress(f"[setup] nights {a['world']['start']}..{a['world']['end']} in {out['setup_night_s']}s; "
              f"{len(deals)} deals to close")

    defs = build_definitions()
    job = defs.resolve_job_def("intraday_publish")
    sensor = build_intraday_sensor(job, running=True, interval_seconds=max(1, int(a["interval"])))
    resources = default_resources()   # what the daemon gives the sensor's ticks

    # --- measured phase: HubSpot's limits on, the server's counts from zero
    sandbox_admin(base, token, "POST", "/_sandbox/knobs", {"rate_limit_10s": CRM_LIMIT_10S,
                                                           "search_per_second": CRM_SEARCH_PER_S})
    sandbox_admin(base, token, "POST", "/_sandbox/stats/reset")
    requests_q: queue.Queue = queue.Queue()
    closes: dict[str, float] = {}      # deal id → close (epoch s)
    ticks: list[dict] = []
    stop = threading.Event()
    errors: list[str] = []
    t0 = time.time()

    def closer() -> None:
        try:
            for i, d in enumerate(deals):
                target = t0 + i * a["every"]
                stop.wait(max(0.0, target - time.time()))
                if stop.is_set():
                    return
                closes[d["id"]] = close_won(home, d, i) / 1000
        except Exception as exc:     # noqa: BLE001 - reported, ends the benchmark
            errors.append(f"closer: {exc!r}")

    def ticker() -> None:
        cursor, k = None, 0
        with DagsterInstance.ephemeral() as instance:
            while not stop.is_set():
                target = t0 + a["first_tick"] + k * a["interval"]
                if stop.wait(max(0.0, target - time.time())):
                    return
                k += 1
                at = time.time()
                try:
                    with build_sensor_context(instance=instance, cursor=cursor, resources=resources) as ctx:
                        result = sensor(ctx)
                except Exception as exc:     # noqa: BLE001 - a failed tick, as the daemon records it
                    ticks.append({"at": at, "seconds": time.time() - at, "error": repr(exc)})
                    continue
                tick = {"at": at, "seconds": round(time.time() - at, 3), "requested": []}
                if not isinstance(result, SkipReason):
                    cursor = result.cursor or cursor
                    for r in result.run_requests or []:
                        if isinstance(r, RunRequest):
                            deals_ = r.run_config["ops"]["intraday_crm_ingest"]["config"]["deal_ids"]
                            tick["requested"] += deals_
                            requests_q.put((at, r))
                ticks.append(tick)

    threads = [threading.Thread(target=closer, daemon=True), threading.Thread(target=ticker, daemon=True)]
    for th in threads:
        th.start()
    runs: list[dict] = []
    deadline = t0 + a["duration"] + 3 * a["interval"] + a["grace"]
    confirmed: dict[str, float] = {}

    def confirmations() -> dict[str, float]:
        wh = Warehouse(settings.warehouse_url)
        try:
            df = wh.query_df("SELECT business_key, updated_at FROM ops.sor_writes WHERE target_system = 'erp' "
                             "AND target_object = 'sales_orders' AND state = 'confirmed'")
        finally:
            wh.dispose()
        return {str(k): v.replace(tzinfo=dt.timezone.utc).timestamp()
                for k, v in zip(df["business_key"], df["updated_at"].dt.to_pydatetime())}

    with open_instance(settings) as instance:
        while time.time() < deadline and not errors:
            try:
                requested_at, req = requests_q.get(timeout=1.0)
            except queue.Empty:
                if len(closes) == len(deals) and set(closes) <= set(confirmed):
                    break
                continue
            started = time.time()
            result = job.execute_in_process(run_config=req.run_config, tags=req.tags, instance=instance,
                                            raise_on_error=False)
            ended = time.time()
            ids = req.run_config["ops"]["intraday_crm_ingest"]["config"]["deal_ids"]
            runs.append({"run_id": result.run_id, "success": result.success, "deals": len(ids), "deal_ids": ids,
                         "requested_at": requested_at, "started": started, "ended": ended,
                         "seconds": round(ended - started, 2)})
            if not result.success:
                errors.append(f"run {result.run_id} failed")
            confirmed = confirmations()
            _progress(f"[run] {len(ids)} deal(s) in {ended - started:.1f}s; "
                      f"{len(set(closes) & set(confirmed))}/{len(deals)} confirmed after {ended - t0:.0f}s")
    stop.set()
    for th in threads:
        th.join(timeout=30)
    elapsed = time.time() - t0
    server = sandbox_admin(base, token, "GET", "/_sandbox/stats")
    confirmed = confirmations()

    # --- per deal: close → sensor look that found it → run start → confirmed
    found_at = {}
    for tk in ticks:
        for d in tk.get("requested", []):
            found_at.setdefault(d, tk["at"])
    run_of = {}
    for r in runs:
        for d in r["deal_ids"]:
            run_of.setdefault(d, r)
    per_deal = []
    for d, closed in closes.items():
        c = confirmed.get(d)
        r = run_of.get(d)
        per_deal.append({"deal": d, "closed": closed, "confirmed": c, "latency_s": None if c is None else c - closed,
                         "wait_sensor_s": None if d not in found_at else found_at[d] - closed,
                         "wait_queue_s": None if r is None else r["started"] - found_at[d],
                         "in_run_s": None if (r is None or c is None) else c - r["started"]})
    lat = [p["latency_s"] for p in per_deal if p["latency_s"] is not None]
    by_kind = {k: v for k, v in server["requests_by_kind"].items() if k != "admin"}
    searches = by_kind.get("search", 0)
    others = sum(v for k, v in by_kind.items() if k != "search")
    out.update({
        "deals_closed": len(closes), "deals_confirmed": sum(1 for p in per_deal if p["confirmed"] is not None),
        "elapsed_s": round(elapsed, 1), "latency_s": {"p50": _r(_pct(lat, .5)), "p95": _r(_pct(lat, .95)),
                                                      "max": _r(max(lat) if lat else None),
                                                      "min": _r(min(lat) if lat else None)},
        "wait_sensor_s": _quant([p["wait_sensor_s"] for p in per_deal]),
        "wait_queue_s": _quant([p["wait_queue_s"] for p in per_deal]),
        "in_run_s": _quant([p["in_run_s"] for p in per_deal]),
        "runs": runs, "run_seconds": _quant([r["seconds"] for r in runs]),
        "ticks": len(ticks), "ticks_requesting": sum(1 for t_ in ticks if t_.get("requested")),
        "tick_seconds": _quant([t_["seconds"] for t_ in ticks]),
        "tick_errors": [t_["error"] for t_ in ticks if "error" in t_],
        "crm_requests_by_kind": by_kind, "crm_requests_by_status": server["requests_by_status"],
        "crm_rate_limited": server["rate_limited_by_policy"],
        "crm_requests_non_search": others, "crm_searches": searches,
        "crm_allowed_non_search": int(CRM_LIMIT_10S / 10 * elapsed), "crm_allowed_searches": int(CRM_SEARCH_PER_S * elapsed),
        "crm_share_non_search_pct": round(100 * others / (CRM_LIMIT_10S / 10 * elapsed), 2),
        "crm_share_search_pct": round(100 * searches / (CRM_SEARCH_PER_S * elapsed), 2),
        "per_deal": per_deal, "errors": errors,
    })
    out["checks"] = checks(home, list(closes))
    return out


def _quant(values) -> dict:
    v = [x for x in values if x is not None]
    return {"p50": _r(_pct(v, .5)), "p95": _r(_pct(v, .95)), "max": _r(max(v) if v else None), "n": len(v)}


def checks(home: Path, deal_ids: list[str]) -> dict:
    """Every closed deal: exactly one ERP order, exactly one confirmed ledger write."""
    import sqlalchemy as sa

    from trueup.connectors.erp_schema import make_erp_engine
    from trueup.connectors.warehouse import Warehouse
    from trueup.orchestration.config import load_settings

    engine = make_erp_engine(world_paths(home).erp_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT crm_deal_id, count(*) FROM sales_orders WHERE crm_deal_id IS NOT NULL "
                                    "GROUP BY crm_deal_id")).all()
    engine.dispose()
    orders = {str(d): int(n) for d, n in rows}
    wh = Warehouse(load_settings().warehouse_url)
    led = wh.query_df("SELECT business_key, count(*) AS n FROM ops.sor_writes WHERE target_object = 'sales_orders' "
                      "AND state = 'confirmed' GROUP BY business_key")
    wh.dispose()
    ledger = dict(zip(led["business_key"].astype(str), led["n"].astype(int)))
    failed = []
    if [d for d in deal_ids if orders.get(d) != 1]:
        failed.append("every closed deal has exactly one ERP order")
    if [d for d in deal_ids if ledger.get(d) != 1]:
        failed.append("every closed deal has exactly one confirmed ledger write")
    if max(orders.values(), default=1) > 1:
        failed.append("no deal has two ERP orders")
    return {"failed": failed, "deals_with_one_order": sum(1 for d in deal_ids if orders.get(d) == 1)}


def code_location_load_s(env: dict) -> float:
    """What the daemon's run launcher adds per run before the first step: a fresh interpreter loading
    the code location (measured, not included in the latencies)."""
    t = Timer()
    subprocess.run([sys.executable, "-c", "from trueup.orchestration.definitions import defs"], cwd=REPO, env=env,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return round(t(), 2)


def run_child(home: str, args_json: str) -> int:
    result = measured(Path(home), json.loads(args_json))
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(MARK + json.dumps(result, default=str), flush=True)
    return 0


# ============================================================================ the parent
def render(result: dict) -> str:
    m = result["measured"]
    parts = [f"Trueup intraday benchmark — {result['started_at']}  ({result['machine']})",
             f"command: {result['command']}", ""]
    lat, ws, wq, ir = m["latency_s"], m["wait_sensor_s"], m["wait_queue_s"], m["in_run_s"]
    parts.append(text_table(["close → confirmed ERP order (s)", "p50", "p95", "max"], [
        ["total", lat["p50"], lat["p95"], lat["max"]],
        ["  waiting for the sensor's next look", ws["p50"], ws["p95"], ws["max"]],
        ["  waiting for the run to start", wq["p50"], wq["p95"], wq["max"]],
        ["  in the run, to the order confirmed", ir["p50"], ir["p95"], ir["max"]],
    ]))
    parts.append("")
    rs = m["run_seconds"]
    parts.append(f"deals closed {m['deals_closed']} (one every {result['every']} s for {result['duration']} s), "
                 f"confirmed {m['deals_confirmed']}; sensor every {result['interval']} s: {m['ticks']} looks "
                 f"({m['ticks_requesting']} requested a run; a look took p50 {m['tick_seconds']['p50']} s); "
                 f"{len(m['runs'])} runs, p50 {rs['p50']} s, p95 {rs['p95']} s, max {rs['max']} s "
                 f"(executed in process; a run process's code location load adds {result['code_location_load_s']} s)")
    parts.append(f"CRM requests by Trueup in {m['elapsed_s']} s: {m['crm_requests_by_kind']}; 429s "
                 f"{m['crm_rate_limited'] or 0}")
    parts.append(f"rate-limit share: {m['crm_requests_non_search']} requests of {m['crm_allowed_non_search']} allowed "
                 f"(100 per 10 s) = {m['crm_share_non_search_pct']} %; {m['crm_searches']} searches of "
                 f"{m['crm_allowed_searches']} allowed (5 per s) = {m['crm_share_search_pct']} %")
    parts.append(f"setup: world {result['world']['start']}..{result['world']['end']} (scale {result['world']['scale']}), "
                 f"nights in {m['setup_night_s']} s (untimed); peak RSS {m['peak_rss_mb']} MB, sandbox CRM "
                 f"{result.get('server_peak_rss_mb')} MB")
    failed = m["checks"]["failed"] + m["errors"]
    parts.append("checks: " + ("PASS (every closed deal: one ERP order, one confirmed ledger write)" if not failed
                               else "FAIL: " + "; ".join(failed)))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_run":
        return run_child(argv[1], argv[2])
    ap = argparse.ArgumentParser(prog="python -m bench intraday", description=__doc__.splitlines()[0])
    ap.add_argument("--every", type=float, default=5.0, help="seconds between two deals closing (5)")
    ap.add_argument("--duration", type=float, default=300.0, help="seconds during which deals close (300)")
    ap.add_argument("--interval", type=float, default=None,
                    help="sensor interval in seconds (default: the production default, 120)")
    ap.add_argument("--scale", type=float, default=3.0, help="size of the generated world (3: ~90 deals to close)")
    ap.add_argument("--smoke", action="store_true", help="a few deals in about a minute (for the test)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary TRUEUP_HOME")
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    ap.add_argument("--quiet", action="store_true", help="no progress lines (the table is still printed)")
    args = ap.parse_args(argv)
    from trueup.orchestration.config import DEFAULT_INTRADAY_INTERVAL_SECONDS

    if args.smoke:
        args.every, args.duration = 2.0, 6.0
        args.interval = args.interval or 5.0
    interval = args.interval or float(DEFAULT_INTRADAY_INTERVAL_SECONDS)
    n_deals = int(args.duration // args.every) + 1
    if args.every <= 0 or args.duration < 0 or interval <= 0:
        ap.error("--every and --interval must be positive, --duration at least 0")

    home = Path(tempfile.mkdtemp(prefix="trueup-bench-intraday-", dir="/tmp"))
    started = dt.datetime.now(dt.timezone.utc)
    result: dict = {
        "benchmark": "intraday", "started_at": started.isoformat(timespec="seconds"),
        "command": "cd /work/main && .venv/bin/python -m bench intraday " + " ".join(argv),
        "machine": f"{os.cpu_count()} CPUs, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB, "
                   f"Python {sys.version.split()[0]}, load avg {os.getloadavg()[0]:.1f} at start",
        "trueup_home": str(home), "every": args.every, "duration": args.duration, "interval": interval,
        "deals": n_deals, "crm_limits": {"rate_limit_10s": CRM_LIMIT_10S, "search_per_second": CRM_SEARCH_PER_S},
    }

    def log(msg: str) -> None:
        if not args.quiet:
            print(msg, flush=True)

    def on_sigterm(*_):
        raise SystemExit(143)

    previous = signal.signal(signal.SIGTERM, on_sigterm) if threading.current_thread() is threading.main_thread() \
        else None
    server = None
    from bench.publish import start_sandbox, stop_sandbox

    try:
        log(f"[setup] seeding a {SMOKE_WORLD_DAYS if args.smoke else WORLD_DAYS}-day world ending yesterday in {home} …")
        result["world"] = seed(home, SMOKE_WORLD_DAYS if args.smoke else WORLD_DAYS, 1.0 if args.smoke else args.scale)
        server, base = start_sandbox(home)
        result["server_pid"] = server.pid
        token = (home / "sandbox" / "crm_token").read_text().strip()
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
        env.update(TRUEUP_HOME=str(home), TRUEUP_CRM_BASE_URL=base, TRUEUP_CRM_TOKEN=token,
                   TRUEUP_ERP_URL=world_paths(home).erp_url, TRUEUP_START_DATE=result["world"]["start"],
                   TRUEUP_WAREHOUSE_URL=f"duckdb:///{home / 'warehouse.duckdb'}", DAGSTER_HOME=str(home / "dagster"),
                   DO_NOT_TRACK="1", DAGSTER_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
        result["code_location_load_s"] = code_location_load_s(env)
        child_args = {"base_url": base, "token": token, "world": result["world"], "deals": n_deals,
                      "every": args.every, "duration": args.duration, "interval": interval,
                      "first_tick": min(interval, 60.0) / 2, "grace": 120 if args.smoke else 300}
        log(f"[measure] {n_deals} deals closing one every {args.every:g} s; sensor every {interval:g} s; "
            f"CRM at {CRM_LIMIT_10S}/10 s, search {CRM_SEARCH_PER_S}/s …")
        err = home / "child.stderr"
        with open(err, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "bench", "intraday", "_run", str(home),
                                     json.dumps(child_args)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                    stderr=fh, text=True)
            measured_out, tail = None, []
            try:
                for line in proc.stdout:
                    if line.startswith(MARK):
                        measured_out = json.loads(line[len(MARK):])
                    elif line.startswith(PROGRESS):
                        log("  … " + line[len(PROGRESS):].rstrip())
                    else:
                        tail = (tail + [line])[-50:]
                rc = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        if rc != 0 or measured_out is None:
            sys.stderr.write("".join(tail) + err.read_text(errors="replace")[-8000:])
            raise RuntimeError(f"the measured run failed (exit {rc})")
        result["measured"] = measured_out
        result["server_peak_rss_mb"] = _r(status_mb("VmHWM", server.pid))
        stop_sandbox(server)
        server = None
        result["finished_at"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        result["passed"] = not (measured_out["checks"]["failed"] or measured_out["errors"])
        print()
        print(render(result))
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / f"intraday-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(result, indent=2, default=str) + "\n")
        print(f"\nresults: {path}")
    finally:
        if server is not None:
            stop_sandbox(server)
        if not args.keep:
            shutil.rmtree(home, ignore_errors=True)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0 if result.get("passed") else 1
