"""Small-night benchmark: what one quiet night costs, step by step.

    python -m bench night                 # demo-scale world (seed 42, scale 1), 14 days
    python -m bench night --days 10 --scale 2

Setup (untimed): a sandbox world in a temporary TRUEUP_HOME (generator seed, scale, days; no
drifted exports) lived up to the day before the last, its CRM served in this process with no rate
limit and no latency, and one backfill run over those days (its wall time is reported), so the
warehouse, the golden customer and the ERP are as the morning before finds them; then the world
lives its last day.

Measured: the nightly job for the last day (the day's changes only: a few dozen records at demo
scale), run as `trueup nightly` runs it (orchestration.runner.run_job, in-process executor),
three times in a row (the first is the real night; the re-runs find nothing new — what a retry
costs). Per step: seconds from STEP_START to STEP_SUCCESS in the run's event log. The floor: the
same job's steps with nothing to do, i.e. Dagster's own cost per step — measured as a job of as
many no-op assets in the same instance (`orchestration overhead`).

Reported: wall seconds of each run, the slowest steps, and the night ÷ floor ratio. Results: a
table on stdout and JSON in bench/results/night-<UTC time>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from bench.common import text_table

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
QUIET_KNOBS = {"rate_limit_10s": 0, "search_per_second": 0, "error_rate_5xx": 0.0, "latency_ms": 0,
               "drop_rate": 0.0, "malformed_rate": 0.0, "frozen_timestamp_ms": None,
               "search_visibility_delay_ms": 0, "seed": 1234}


def step_events(instance, run_id: str) -> dict[str, dict]:
    """Step key → {start, end, pid, error} from the run's STEP_START / STEP_SUCCESS / STEP_FAILURE
    events (end and error only once it ended; error only if it failed)."""
    steps: dict[str, dict] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or not entry.step_key:
            continue
        if event.event_type_value == "STEP_START":
            steps.setdefault(entry.step_key, {}).update(start=entry.timestamp, pid=event.pid)
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and entry.step_key in steps:
            steps[entry.step_key]["end"] = entry.timestamp
            if event.event_type_value == "STEP_FAILURE":
                error = getattr(event.event_specific_data, "error", None)
                steps[entry.step_key]["error"] = (error.message if error else entry.message or "")[:300].strip()
    return steps


def step_seconds(instance, run_id: str) -> dict[str, float]:
    """Step key → seconds from its STEP_START to its STEP_SUCCESS (or failure)."""
    return {k: s["end"] - s["start"] for k, s in step_events(instance, run_id).items() if "end" in s}


def floor_seconds(instance, steps: int) -> float:
    """Wall seconds of a job of `steps` chained no-op assets in this instance (Dagster's own cost)."""
    from dagster import AssetIn, Definitions, asset, define_asset_job, in_process_executor

    chain = []
    for i in range(steps):
        ins = {"upstream": AssetIn(f"noop_{i - 1}")} if i else {}

        @asset(name=f"noop_{i}", ins=ins)
        def _noop(**_kwargs):
            return 0
        chain.append(_noop)
    job = Definitions(assets=chain, jobs=[define_asset_job("noop_chain", executor_def=in_process_executor)]
                      ).resolve_job_def("noop_chain")
    t0 = time.perf_counter()
    assert job.execute_in_process(instance=instance).success
    return time.perf_counter() - t0


def run_writes(warehouse_url: str, run_id: str) -> dict:
    """What the run wrote to the systems of record (its ledger rows confirmed), and the least time
    the CRM's rate limit needs for its part: batch writes carry 100 records, 100 requests per 10 s."""
    from trueup.connectors.warehouse import Warehouse

    wh = Warehouse(warehouse_url)
    try:
        df = wh.query_df("SELECT target_system, target_object, count(*) AS n FROM ops.sor_writes "
                         "WHERE run_id = :r AND state = 'confirmed' GROUP BY 1, 2", {"r": run_id})
    finally:
        wh.dispose()
    crm = df[df["target_system"] == "crm"]
    requests = int(sum(-(-int(n) // 100) for n in crm["n"]))
    return {"erp": int(df.loc[df["target_system"] == "erp", "n"].sum()), "crm": int(crm["n"].sum()),
            "crm_requests": requests, "crm_limit_s": requests * 10 / 100}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench night", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--reruns", type=int, default=2, help="re-runs of the same night after the first")
    ap.add_argument("--keep", action="store_true", help="keep the temporary TRUEUP_HOME (deleted by default)")
    args = ap.parse_args(argv)

    from trueup.sandbox.crm import start_in_thread
    from trueup.sandbox.generator.config import WorldConfig
    from trueup.sandbox.generator.world import WorldPaths, advance_world, seed_world

    home = Path(tempfile.mkdtemp(prefix="trueup-bench-night-"))
    cfg = WorldConfig(seed=args.seed, scale=args.scale, days=args.days, schema_drift_days=())
    paths = WorldPaths(home / "sandbox", f"sqlite:///{home / 'sandbox' / 'erp.sqlite'}", home / "landing")
    (home / "sandbox").mkdir(parents=True)
    # the world as it stood the morning before: the backfill must not see the last day's changes (a
    # company touched that day is missing from a backfill of the days before, and at scale 200 the
    # contacts naming such companies pushed the contacts' gate over its 5 % threshold)
    seed_world(paths, cfg, days=cfg.days - 1)
    token = "bench-" + secrets.token_hex(8)
    server = start_in_thread(paths.crm_db, token, knobs=dict(QUIET_KNOBS))
    os.environ.update({
        "TRUEUP_HOME": str(home), "TRUEUP_CRM_BASE_URL": server.base_url, "TRUEUP_CRM_TOKEN": token,
        "TRUEUP_ERP_URL": paths.erp_url, "TRUEUP_START_DATE": cfg.start_date.isoformat(),
        # publishing from the world's go-live: without it the default (2026-10-01) lies after the
        # default world's days, and the night measured would publish nothing
        "TRUEUP_PUBLISH_FROM": cfg.golive.isoformat(),
        "TRUEUP_WAREHOUSE_URL": f"duckdb:///{home / 'warehouse.duckdb'}", "DAGSTER_HOME": str(home / "dagster"),
    })
    from trueup.orchestration.config import load_settings
    from trueup.orchestration.runner import open_instance, run_job

    settings = load_settings()
    days = [cfg.start_date + dt.timedelta(days=i) for i in range(cfg.days)]
    try:
        t0 = time.perf_counter()
        backfill = run_job(settings, "nightly_sync", days[0], days[-2])
        backfill_s = time.perf_counter() - t0
        if not backfill.success:
            print(f"setup backfill failed: {backfill.error}")
            return 1
        advance_world(paths, 1)   # the company lives its last day; the night catches it up
        runs = []
        for attempt in range(1 + args.reruns):
            t0 = time.perf_counter()
            night = run_job(settings, "nightly_sync", days[-1])
            wall = time.perf_counter() - t0
            if not night.success:
                print(f"night failed: {night.error}")
                return 1
            with open_instance(settings) as instance:
                steps = step_seconds(instance, night.run_id)
            runs.append({"label": "night" if attempt == 0 else f"re-run {attempt}", "wall_s": round(wall, 2),
                         "steps": {k: round(v, 3) for k, v in sorted(steps.items(), key=lambda kv: -kv[1])},
                         "writes": run_writes(settings.warehouse_url, night.run_id)})
        with open_instance(settings) as instance:
            floor = floor_seconds(instance, len(runs[0]["steps"]))
    finally:
        server.stop()
        if args.keep:
            print(f"kept: {home}")
        else:   # generated data: ~150 MB at scale 200
            shutil.rmtree(home, ignore_errors=True)

    night = runs[0]
    print(f"world: seed {args.seed}, scale {args.scale}, {args.days} days; backfill of {args.days - 1} days "
          f"{backfill_s:.1f} s (setup)")
    print(text_table(["run", "wall s", "sum of steps s", "steps"],
                     [[r["label"], r["wall_s"], round(sum(r["steps"].values()), 2), len(r["steps"])] for r in runs]
                     + [["floor: no-op chain", round(floor, 2), "", len(night["steps"])]]))
    print()
    print(text_table(["step (the night)", "s"], [[k, v] for k, v in list(night["steps"].items())]))
    print(f"\nnight ÷ floor: {night['wall_s'] / floor:.1f}×   (target: the night ≤ 8 s wall)")
    print(f"night ÷ backfill of {args.days - 1} days: {night['wall_s'] / backfill_s:.0%}   (target: ≤ 10 %)")
    w = night["writes"]
    publish_s = night["steps"].get("publish__erp_orders", 0.0)
    print(f"the night's writes: ERP {w['erp']}, CRM {w['crm']} in at least {w['crm_requests']} requests of 100 "
          f"= {w['crm_limit_s']:.1f} s at the CRM's 100 requests per 10 s; publish__erp_orders {publish_s:.1f} s"
          + (f" = {publish_s / w['crm_limit_s']:.1f}× that (target: ≤ 2×)" if w["crm_limit_s"] else ""))
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"night-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps({"args": vars(args), "backfill_s": round(backfill_s, 2), "runs": runs,
                               "floor_s": round(floor, 2)}, indent=2))
    print(f"results: {out}")
    return 0
