"""Distributed-execution benchmark: one PostgreSQL world's backfill and its next incremental night,
with the steps run in process, by Dagster's multiprocess executor, and by its Celery executor
with two workers (issue 20).

    python -m bench distributed                              # scale 20, 10 days, all three
    python -m bench distributed --scale 5 --days 6 --executors in_process,celery
    # the issue's size: a book of ≥ 200k deals and ≥ 2M invoice and payment rows, of which the
    # first partition loads 60 days of history (the initial load), then 29 days and one night
    python -m bench distributed --scale 500 --history 60 --days 30 --billing heavy

Setup (untimed), per executor and from nothing each time, so each starts from the same state: a
throwaway PostgreSQL cluster (sandbox/postgres.py) with fresh databases for the Dagster instance
(the production instance file, dagster-postgres), the warehouse and the ERP; the sandbox world
(generator seed, scale, days) seeded up to the day before the last; its CRM served by this
process with no rate limit; for Celery, a Redis broker (Debian's redis-server) and two workers
(`dagster-celery worker start`, one task at a time each).

Measured: the nightly job over all days but the last in one run (the backfill), then the world
lives its last day and the nightly job runs for it (the night) — each run executed through the
instance with the job's executor (`dagster.execute_job`; TRUEUP_EXECUTOR chooses it), in a child
process. Per run: wall seconds, the steps' seconds (STEP_START → STEP_SUCCESS), their sum, and the
critical path (the chain of steps, each waiting for the dependency that finished last, from the
last step back). Ratios: each executor's wall ÷ in process's, in the same run of the benchmark.
Results: a table on stdout and JSON in bench/results/distributed-<UTC time>.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import text_table
from bench.night import run_writes

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
EXECUTORS = ("in_process", "multiprocess", "celery")
QUIET_KNOBS = {"rate_limit_10s": 0, "search_per_second": 0, "error_rate_5xx": 0.0, "latency_ms": 0,
               "drop_rate": 0.0, "malformed_rate": 0.0, "frozen_timestamp_ms": None,
               "search_visibility_delay_ms": 0, "seed": 1234}
BIN = Path(sys.executable).parent


def nightly_job():
    """The nightly job as the code location builds it (module level: the multiprocess executor's
    step processes and the Celery workers rebuild it from here)."""
    from trueup.orchestration.definitions import build_definitions

    return build_definitions().resolve_job_def("nightly_sync")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the child: two runs through the instance, with the job's executor -------------------------------
def _run_child(spec: dict) -> dict:
    from dagster import DagsterInstance, execute_job, reconstructable

    out = {}
    with DagsterInstance.get() as instance:
        for name, tags in (("backfill", {"dagster/asset_partition_range_start": spec["first"],
                                         "dagster/asset_partition_range_end": spec["before_last"]}),
                           ("night", {"dagster/partition": spec["last"]})):
            if name == "night":
                from trueup.sandbox.generator.world import WorldPaths, advance_world

                advance_world(WorldPaths(Path(spec["sandbox"]), spec["erp_url"], Path(spec["landing"])), 1)
            t0 = time.perf_counter()
            with execute_job(reconstructable(nightly_job), instance=instance, raise_on_error=False,
                             tags={**tags, "trueup/trigger": "bench"}) as result:
                wall = time.perf_counter() - t0
                out[name] = {"success": result.success, "wall_s": round(wall, 2), "run_id": result.run_id,
                             **_steps_and_path(instance, result.run_id),
                             "writes": run_writes(os.environ["TRUEUP_WAREHOUSE_URL"], result.run_id)}
    return out


def _steps_and_path(instance, run_id: str) -> dict:
    """Each step's start and end, their sum, and the critical path through the plan's dependencies."""
    run = instance.get_run_by_id(run_id)
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    deps = {s.key: {h.step_key for i in s.inputs for h in i.upstream_output_handles} for s in plan.steps}
    from bench.night import step_events

    events = step_events(instance, run_id)
    end = {k: e["end"] for k, e in events.items() if "end" in e}
    pids = {e["pid"] for e in events.values()}
    failed = {k: e["error"] for k, e in events.items() if "error" in e}
    took = {k: round(e["end"] - e["start"], 2) for k, e in events.items() if "end" in e}
    path, step = [], max(end, key=end.get) if end else None
    while step is not None:
        path.append(step)
        before = [d for d in deps.get(step, ()) if d in end]
        step = max(before, key=end.get) if before else None
    path.reverse()
    return {"steps_s": took, "steps_sum_s": round(sum(took.values()), 2), "step_processes": len(pids),
            "critical_path": path, "critical_path_s": round(sum(took[k] for k in path), 2), "failed": failed}


# -- the parent: a fresh world, instance and warehouse per executor -----------------------------------
def _one_executor(executor: str, args, cluster, root: Path) -> dict:
    from trueup.sandbox.crm import start_in_thread
    from trueup.sandbox.generator.config import WorldConfig
    from trueup.sandbox.generator.world import WorldPaths, seed_world

    home = root / executor
    dagster_db, warehouse_url, erp_url = (cluster.create_database() for _ in range(3))
    from bench.pipeline import BILLING, _volumes

    # the world lives its history, then the platform's days; the platform's first partition is the
    # first day after the history, and its run loads the history (the initial load)
    lived = args.history + args.days
    cfg = WorldConfig(seed=args.seed, scale=args.scale, days=lived, schema_drift_days=(),
                      **(BILLING if args.billing == "heavy" else {}),
                      **({"golive_date": _start(args)} if args.history else {}))
    paths = WorldPaths(home / "sandbox", erp_url, home / "landing")
    t0 = time.perf_counter()
    seed_world(paths, cfg, days=lived - 1)
    seeded = time.perf_counter() - t0
    volumes = _volumes(paths)
    token = "bench-" + secrets.token_hex(8)
    server = start_in_thread(paths.root / "crm.sqlite", token, knobs=dict(QUIET_KNOBS))
    from sqlalchemy.engine import make_url

    pg = make_url(dagster_db)
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "orchestration" / "dagster_production.yaml", home / "dagster" / "dagster.yaml")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRUEUP_")},
           "TRUEUP_HOME": str(home), "TRUEUP_WAREHOUSE_URL": warehouse_url, "TRUEUP_ERP_URL": erp_url,
           "TRUEUP_LANDING_DIR": str(paths.landing_dir), "TRUEUP_CRM_BASE_URL": server.base_url,
           "TRUEUP_CRM_TOKEN": token, "TRUEUP_START_DATE": _start(args).isoformat(),
           # publishing from the world's go-live (with a history: the platform's first day): without
           # it the default (2026-10-01) lies after the default world's days, and the runs measured
           # would publish nothing
           "TRUEUP_PUBLISH_FROM": cfg.golive.isoformat(),
           "TRUEUP_CRM_REQUESTS_PER_10S": "100000", "TRUEUP_CRM_SEARCHES_PER_SECOND": "1000",
           "TRUEUP_EXECUTOR": executor, "DAGSTER_HOME": str(home / "dagster"),
           "DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_USER": pg.username,
           "DAGSTER_PG_PASSWORD": pg.password or "", "DAGSTER_PG_DB": pg.database,
           "DO_NOT_TRACK": "1", "DAGSTER_DISABLE_TELEMETRY": "1", "PYTHONPATH": str(REPO),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    helpers: list[subprocess.Popen] = []
    # the instance's tables made once, before several processes would race to make them
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=env, cwd=REPO, capture_output=True, check=True)
    try:
        if executor == "celery":
            redis = shutil.which("redis-server") or "/usr/bin/redis-server"
            port = _free_port()
            env["TRUEUP_CELERY_BROKER"] = f"redis://127.0.0.1:{port}/0"
            logs = home / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            helpers.append(subprocess.Popen([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                             "--appendonly", "no"], stdout=subprocess.DEVNULL,
                                            stderr=subprocess.DEVNULL, start_new_session=True))
            for n in range(args.workers):
                helpers.append(subprocess.Popen(
                    [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y",
                     str(REPO / "orchestration" / "celery_worker.yaml"), "-n", f"bench-{n + 1}", "--",
                     "--concurrency=1"], cwd=REPO, env=env, stdout=open(logs / f"worker-{n + 1}.log", "w"),
                    stderr=subprocess.STDOUT, start_new_session=True))
            _wait_for_workers(env, args.workers, logs)
        days = [_start(args) + dt.timedelta(days=i) for i in range(args.days)]
        spec = {"first": days[0].isoformat(), "before_last": days[-2].isoformat(), "last": days[-1].isoformat(),
                "sandbox": str(paths.root), "erp_url": erp_url, "landing": str(paths.landing_dir)}
        child = subprocess.run([sys.executable, "-m", "bench", "distributed", "_run", json.dumps(spec)],
                               cwd=REPO, env=env, capture_output=True, text=True, timeout=3600)
        if child.returncode != 0 or not child.stdout.strip():
            raise RuntimeError(f"{executor}: the measured runs failed:\n{child.stderr[-4000:]}")
        measured = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        for p in helpers:
            try:
                os.killpg(p.pid, 15)
                p.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        server.stop()
    return {"seed_s": round(seeded, 1), "volumes": volumes, **measured}


def _start(args) -> dt.date:
    """The platform's first business day: the world's first day after its history."""
    from trueup.sandbox.generator.config import WorldConfig

    return WorldConfig().start_date + dt.timedelta(days=args.history)


def _wait_for_workers(env: dict, n: int, logs: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = subprocess.run([str(BIN / "celery"), "-A", "dagster_celery.app", "-b", env["TRUEUP_CELERY_BROKER"],
                              "inspect", "ping", "--timeout", "2"], env=env, capture_output=True, text=True).stdout
        if out.count("pong") >= n:
            return
        time.sleep(2)
    tails = "\n".join(f"--- {f.name}\n{f.read_text(errors='replace')[-1500:]}" for f in sorted(logs.glob("worker-*.log")))
    raise RuntimeError(f"{n} Celery workers did not answer within 120 s\n{tails}")


def render(result: dict) -> str:
    base = {k: result["executors"]["in_process"][k]["wall_s"] for k in ("backfill", "night")} \
        if "in_process" in result["executors"] else None
    rows = []
    for name, r in result["executors"].items():
        for run in ("backfill", "night"):
            m = r[run]
            ratio = f"{m['wall_s'] / base[run]:.2f}x" if base else ""
            w = m.get("writes") or {}
            rows.append([f"{name} {run}", "ok" if m["success"] else "FAILED", m["wall_s"], ratio, m["steps_sum_s"],
                         m["critical_path_s"], m["step_processes"], f"{w.get('erp', '-')} + {w.get('crm', '-')}",
                         " > ".join(m["critical_path"][-4:])])
    history = result.get("history") or 0
    head = (f"scale {result['scale']}, {result['days']} days (backfill {result['days'] - 1} days, then one night)"
            + (f" after {history} days of history loaded by the first partition" if history else "")
            + f", PostgreSQL warehouse and instance; {result['machine']}")
    volumes = next((r.get("volumes") for r in result["executors"].values() if r.get("volumes")), None)
    if volumes:
        rows_ip = volumes.get("erp_invoices", 0) + volumes.get("erp_payments", 0)
        head += (f"\nthe world before the night: {volumes.get('crm_deals', 0):,} deals, {rows_ip:,} invoice and "
                 f"payment rows ({', '.join(f'{k} {v:,}' for k, v in volumes.items())})")
    return head + "\n" + text_table(["executor / run", "", "wall s", "÷ in process", "steps sum s",
                                     "critical path s", "step processes", "writes ERP + CRM",
                                     "critical path (last steps)"], rows)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "_run":
        print(json.dumps(_run_child(json.loads(argv[1]))))
        return 0
    ap = argparse.ArgumentParser(prog="python -m bench distributed", description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--history", type=int, default=0,
                    help="days the world lives before the platform's first day (loaded by its first partition)")
    ap.add_argument("--billing", choices=("default", "heavy"), default="default",
                    help="heavy: every order invoiced and every invoice paid in 2..9 parts (bench pipeline's)")
    ap.add_argument("--workers", type=int, default=2, help="Celery workers (one task at a time each)")
    ap.add_argument("--executors", default=",".join(EXECUTORS))
    ap.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = ap.parse_args(argv)
    chosen = [e.strip() for e in args.executors.split(",") if e.strip()]
    unknown = set(chosen) - set(EXECUTORS)
    if unknown or args.days < 2:
        ap.error(f"--executors from {', '.join(EXECUTORS)}; --days at least 2")
    if "celery" in chosen and not (shutil.which("redis-server") or Path("/usr/bin/redis-server").exists()):
        ap.error("the Celery executor needs Debian's redis-server (apt-get install redis-server)")
    from trueup.sandbox.postgres import PgCluster

    started = dt.datetime.now(dt.timezone.utc)
    root = Path(tempfile.mkdtemp(prefix="trueup-bench-distributed-"))
    result = {"benchmark": "distributed", "started_at": started.isoformat(timespec="seconds"),
              "command": "python -m bench distributed " + " ".join(argv), "scale": args.scale, "days": args.days,
              "history": args.history, "billing": args.billing, "workers": args.workers,
              "machine": f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start", "executors": {}}
    cluster = PgCluster.start()
    try:
        for executor in chosen:
            print(f"[{executor}] seeding, then the backfill and the night …", flush=True)
            result["executors"][executor] = _one_executor(executor, args, cluster, root)
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(render(result))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"distributed-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nresults: {path}")
    return 0 if all(r[run]["success"] for r in result["executors"].values() for run in ("backfill", "night")) else 1
