"""The production topology, run for real (issue 20): a PostgreSQL-backed Dagster instance
(orchestration/dagster_production.yaml: dagster-postgres storage, the queued run coordinator), the
code location served by its own gRPC server (`dagster code-server start`), `dagster-webserver` and
`dagster-daemon` as separate processes loading it through a gRPC workspace, and the warehouse and
the ERP in PostgreSQL. The nightly job runs twice:
  1. launched through the webserver's GraphQL API for a day, as the UI launches it: queued, then
     started by the daemon in a process of its own;
  2. started by the daemon's scheduler when the nightly schedule's time comes (TRUEUP_NIGHTLY_AT is
     set a minute or two ahead), for the previous day, as every night in production.
Both must succeed, and each day's rows and run facts must be in the PostgreSQL warehouse."""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from sqlalchemy.engine import make_url

from tests.fixtures_cli import free_port
from tests.world_fixtures import TINY_WORLD, world_in_env

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PRODUCTION_YAML = REPO / "orchestration" / "dagster_production.yaml"
pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ASSETS_Q = "{ assetNodes { assetKey { path } } }"
LAUNCH_Q = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId status } }
  ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN_Q = """query($id: ID!) { runOrError(runId: $id) { __typename
  ... on Run { status tags { key value } } ... on PythonError { message } } }"""
SCHEDULED_Q = """query { runsOrError(filter: {tags: [{key: "dagster/schedule_name", value: "nightly_sync_schedule"}]})
  { __typename ... on Runs { results { runId status tags { key value } } } } }"""
ENDED = ("SUCCESS", "FAILURE", "CANCELED")


def _gql(url: str, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
    resp = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=timeout)
    resp.raise_for_status()
    body = resp.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


class Topology:
    """The three long-lived processes, each in a session of its own, with its log under `logs`."""

    def __init__(self, env: dict[str, str], logs: Path):
        self.env, self.logs, self.procs = env, logs, {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"{name} exited {proc.returncode}:\n{self.tail(name)}"

    def tail(self, name: str, chars: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _schedule_time(now: dt.datetime) -> dt.datetime:
    """The first whole minute at least 80 s ahead: after the daemon's first look at the schedule
    (a schedule's ticks before that are not caught up). If the run launched from the UI is still
    going then, the scheduled one waits in the queue (one run writing business days at a time)."""
    ahead = now + dt.timedelta(seconds=80)
    return ahead.replace(second=0, microsecond=0) + (dt.timedelta(minutes=1) if ahead.second or ahead.microsecond
                                                     else dt.timedelta(0))


def _wait_for(what: str, probe, topology: Topology, timeout: float, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topology.alive()
        got = probe()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"{what} within {timeout:.0f} s; logs in {topology.logs}:\n"
                         + "\n".join(f"--- {n}\n{topology.tail(n, 1500)}" for n in topology.procs))


def test_nightly_runs_through_webserver_daemon_and_schedule_on_postgres(tmp_path, monkeypatch, pg_cluster):
    from trueup.connectors.warehouse import Warehouse

    dagster_db, warehouse_url, erp_url = (pg_cluster.create_database() for _ in range(3))
    today = dt.datetime.now(dt.timezone.utc).date()
    # three days ending yesterday: the schedule's partition (the previous day) is a day the world lived
    cfg = dataclasses.replace(TINY_WORLD, start_date=today - dt.timedelta(days=3))
    with world_in_env(monkeypatch, tmp_path / "home", cfg=cfg, warehouse_url=warehouse_url, erp_url=erp_url) as w:
        dagster_home = Path(w.env["DAGSTER_HOME"])
        dagster_home.mkdir(parents=True, exist_ok=True)
        shutil.copy(PRODUCTION_YAML, dagster_home / "dagster.yaml")
        pg = make_url(dagster_db)
        grpc_port, web_port = free_port(), free_port()
        workspace = tmp_path / "workspace.yaml"
        workspace.write_text(f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n"
                             f"      location_name: trueup\n")
        at = _schedule_time(dt.datetime.now(dt.timezone.utc))
        env = {**os.environ, **w.env, "DO_NOT_TRACK": "1", "DAGSTER_DISABLE_TELEMETRY": "1",
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               "DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_USER": pg.username,
               "DAGSTER_PG_PASSWORD": pg.password or "", "DAGSTER_PG_DB": pg.database,
               "TRUEUP_TIMEZONE": "UTC", "TRUEUP_NIGHTLY_AT": at.strftime("%H:%M")}
        topology = Topology(env, tmp_path / "logs")
        try:
            topology.start("code-server", [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1",
                                           "-p", str(grpc_port), "-m", "trueup.orchestration.definitions",
                                           "--location-name", "trueup"])
            topology.start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
                                         "-w", str(workspace)])
            topology.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)])
            gql = f"http://127.0.0.1:{web_port}/graphql"

            def graph_served():
                try:
                    return [n for n in _gql(gql, ASSETS_Q, timeout=10)["assetNodes"]]
                except (requests.RequestException, AssertionError):
                    return None

            t0 = time.monotonic()
            _wait_for("the webserver serving the code server's asset graph", graph_served, topology, 120)
            print(f"\ntopology up in {time.monotonic() - t0:.0f} s; the schedule is due at {at:%H:%M:%S} UTC")

            # 1. launched as the UI launches it: queued, then started by the daemon
            day = w.days()[-2].isoformat()
            params = {"selector": {"repositoryLocationName": "trueup", "repositoryName": "__repository__",
                                   "jobName": "nightly_sync"},
                      "runConfigData": {},
                      "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day},
                                                     {"key": "trueup/trigger", "value": "topology-test"}]}}
            launched = _gql(gql, LAUNCH_Q, {"p": params})["launchRun"]
            assert launched["__typename"] == "LaunchRunSuccess", launched
            assert launched["run"]["status"] == "QUEUED"   # the queued run coordinator: the daemon starts it
            ui_run = launched["run"]["runId"]

            def ui_run_ended():
                run = _gql(gql, RUN_Q, {"id": ui_run})["runOrError"]
                return run["status"] if run["status"] in ENDED else None

            t1 = time.monotonic()
            assert _wait_for(f"run {ui_run} ending", ui_run_ended, topology, 240) == "SUCCESS"
            print(f"the run launched through GraphQL: queued, started by the daemon, SUCCESS after "
                  f"{time.monotonic() - t1:.0f} s")

            # 2. the daemon's scheduler starts the night of the previous day at TRUEUP_NIGHTLY_AT
            yesterday = w.days()[-1].isoformat()

            def scheduled_ended():
                runs = _gql(gql, SCHEDULED_Q)["runsOrError"]["results"]
                return runs if runs and all(r["status"] in ENDED for r in runs) else None

            wait = (at - dt.datetime.now(dt.timezone.utc)).total_seconds() + 240
            scheduled = _wait_for(f"the scheduled run (due {at:%H:%M} UTC) ending", scheduled_ended, topology, wait)
            assert len(scheduled) == 1, scheduled
            tags = {t["key"]: t["value"] for t in scheduled[0]["tags"]}
            assert tags["dagster/partition"] == yesterday and tags["trueup/trigger"] == "schedule"
            assert scheduled[0]["status"] == "SUCCESS", f"{scheduled[0]['runId']}: see {topology.logs}"
            print(f"the scheduled run of {yesterday}: SUCCESS at {dt.datetime.now(dt.timezone.utc):%H:%M:%S} UTC")
            topology.alive()
        finally:
            topology.stop()

        # the runs are in PostgreSQL's run storage (nothing in SQLite under DAGSTER_HOME) and each
        # day's rows and run facts are in the PostgreSQL warehouse, written by those runs
        assert not list(dagster_home.rglob("*.db"))
        wh = Warehouse(warehouse_url)
        try:
            for run_id, partition in ((ui_run, day), (scheduled[0]["runId"], yesterday)):
                facts = wh.query_df("SELECT asset, status FROM ops.sync_runs WHERE run_id = :r AND partition = :p",
                                    {"r": run_id, "p": partition})
                assert {"raw/crm_deals", "validated/crm_deals", "publish/erp_orders"} <= set(facts["asset"]), facts
                assert set(facts["status"]) == {"success"}, facts
                landed = wh.query_df("SELECT count(*) AS n FROM raw.crm_deals WHERE _partition = :p", {"p": partition})
                assert int(landed["n"].iloc[0]) > 0
        finally:
            wh.dispose()
