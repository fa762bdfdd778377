"""The Celery executor runs here (issue 20 item 2): the production topology (tests/topology.py) with
TRUEUP_EXECUTOR=celery, a Redis broker (Debian's redis-server, started by the test like PostgreSQL)
and two Celery worker processes (`dagster-celery worker start`, one task at a time each). A nightly
run on the PostgreSQL warehouse, launched as the UI launches it, runs its steps as Celery tasks:
independent steps on the two workers at the same time — read back from the run's own events in
PostgreSQL (each step's process id and its start and end)."""
from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import subprocess
import time
from itertools import combinations
from pathlib import Path

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from tests.fixtures_cli import free_port
from tests.topology import BIN, REPO, Topology, launch_partition, production_env, run_ended, start_dagster, wait_for
from tests.world_fixtures import TINY_WORLD, world_in_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
REDIS = shutil.which("redis-server") or next((p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server")
                                               if Path(p).exists()), None)


def _steps(dagster_db: str, run_id: str) -> dict[str, dict]:
    """step key → {pid, start, end} from the run's STEP_START / STEP_SUCCESS events in PostgreSQL."""
    from dagster._serdes import deserialize_value

    url = make_url(dagster_db)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT event FROM event_logs WHERE run_id = %s AND dagster_event_type IN "
                        "('STEP_START', 'STEP_SUCCESS')", (run_id,))
            rows = [deserialize_value(r[0]) for r in cur.fetchall()]
    finally:
        conn.close()
    steps: dict[str, dict] = {}
    for entry in rows:
        step = steps.setdefault(entry.step_key, {})
        if entry.dagster_event.event_type_value == "STEP_START":
            step.update(pid=entry.dagster_event.pid, start=entry.timestamp)
        else:
            step["end"] = entry.timestamp
    return steps


def test_a_nightly_run_spreads_its_steps_over_two_celery_workers(tmp_path, monkeypatch, pg_cluster):
    if REDIS is None:
        pytest.skip("redis-server is not installed (Debian: apt-get install redis-server; `make test` installs "
                    "it where it runs as root): the Celery executor needs a Redis broker")
    from trueup.connectors.warehouse import Warehouse

    dagster_db, warehouse_url, erp_url = (pg_cluster.create_database() for _ in range(3))
    redis_port = free_port()
    cfg = dataclasses.replace(TINY_WORLD, start_date=dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=3))
    with world_in_env(monkeypatch, tmp_path / "home", cfg=cfg, warehouse_url=warehouse_url, erp_url=erp_url) as w:
        env = production_env(w, dagster_db, TRUEUP_EXECUTOR="celery",
                             TRUEUP_CELERY_BROKER=f"redis://127.0.0.1:{redis_port}/0")
        topology = Topology(env, tmp_path / "logs")
        try:
            topology.start("redis", [REDIS, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                                     "--appendonly", "no", "--protected-mode", "yes"])
            url = start_dagster(topology, tmp_path)   # (it makes the instance's tables first)
            for name in ("worker-1", "worker-2"):
                topology.start(name, [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                                      "-y", str(REPO / "orchestration" / "celery_worker.yaml"), "-n", name,
                                      "--", "--concurrency=1"])

            def workers_ready():
                out = subprocess.run([str(BIN / "celery"), "-A", "dagster_celery.app", "-b",
                                      env["TRUEUP_CELERY_BROKER"], "inspect", "ping", "--timeout", "2"],
                                     env=env, capture_output=True, text=True, timeout=30).stdout
                return out.count("pong") >= 2

            wait_for("two Celery workers answering", workers_ready, topology, 90, every=3)
            day = w.days()[-1].isoformat()
            run_id = launch_partition(url, "nightly_sync", day, "celery-test")
            t0 = time.monotonic()
            status = run_ended(url, run_id, topology, 420)
            took = time.monotonic() - t0
            assert status == "SUCCESS", f"run {run_id} ended {status}; logs in {topology.logs}"
        finally:
            topology.stop()

        steps = _steps(dagster_db, run_id)
        assert {"raw__crm_deals", "validated__crm_deals", "dbt_models", "publish__erp_orders"} <= set(steps)
        assert all("end" in s for s in steps.values()), steps
        pids = {s["pid"] for s in steps.values()}
        # every step ran in a worker, not in the run's own process: two worker processes took them
        assert len(pids) == 2, pids
        overlapping = [(a, b) for (a, sa), (b, sb) in combinations(steps.items(), 2)
                       if sa["pid"] != sb["pid"] and sa["start"] < sb["end"] and sb["start"] < sa["end"]]
        assert overlapping, "no two steps ran on the two workers at the same time"
        print(f"\nCelery: {len(steps)} steps on {len(pids)} worker processes in {took:.0f} s; "
              f"{len(overlapping)} pairs of steps ran at the same time, e.g. {overlapping[0]}")
        wh = Warehouse(warehouse_url)
        try:
            facts = wh.query_df("SELECT asset, status FROM ops.sync_runs WHERE run_id = :r", {"r": run_id})
            assert {"raw/crm_deals", "publish/erp_orders"} <= set(facts["asset"]) and set(facts["status"]) == {"success"}
        finally:
            wh.dispose()

