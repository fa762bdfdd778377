"""The production topology as processes, for the tests that run it (tests/e2e): a PostgreSQL-backed
Dagster instance (orchestration/dagster_production.yaml), the code location on its own gRPC server,
dagster-webserver and dagster-daemon over a gRPC workspace — and what else a test adds (Celery
workers) — each process in a session of its own with its log; GraphQL helpers to drive it."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy.engine import make_url

from tests.fixtures_cli import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PRODUCTION_YAML = REPO / "orchestration" / "dagster_production.yaml"
#: the code location's entry point; the Dockerfile, compose.yaml and the Helm values name the same
CODE_SERVER = ["dagster", "code-server", "start"]
CODE_LOCATION_ARGS = ["-m", "trueup.orchestration.definitions", "--location-name", "trueup"]

ASSETS_Q = "{ assetNodes { assetKey { path } } }"
LAUNCH_Q = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId status } }
  ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN_Q = """query($id: ID!) { runOrError(runId: $id) { __typename
  ... on Run { status tags { key value } } ... on PythonError { message } } }"""
SCHEDULED_Q = """query { runsOrError(filter: {tags: [{key: "dagster/schedule_name", value: "nightly_sync_schedule"}]})
  { __typename ... on Runs { results { runId status tags { key value } } } } }"""
ENDED = ("SUCCESS", "FAILURE", "CANCELED")


def gql(url: str, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
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


def schedule_time(now: dt.datetime) -> dt.datetime:
    """The first whole minute at least 80 s ahead: after the daemon's first look at the schedule
    (a schedule's ticks before that are not caught up). If the run launched from the UI is still
    going then, the scheduled one waits in the queue (one run writing business days at a time)."""
    ahead = now + dt.timedelta(seconds=80)
    return ahead.replace(second=0, microsecond=0) + (dt.timedelta(minutes=1) if ahead.second or ahead.microsecond
                                                     else dt.timedelta(0))


def wait_for(what: str, probe, topology: Topology, timeout: float, every: float = 2.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topology.alive()
        got = probe()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"{what} within {timeout:.0f} s; logs in {topology.logs}:\n"
                         + "\n".join(f"--- {n}\n{topology.tail(n, 1500)}" for n in topology.procs))




def production_env(world, dagster_db_url: str, **extra: str) -> dict[str, str]:
    """The environment of every process of the topology: the world's settings, the production
    instance in DAGSTER_HOME (its storage in `dagster_db_url`), the tools of this venv on PATH."""
    home = Path(world.env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    pg = make_url(dagster_db_url)
    return {**os.environ, **world.env, "DO_NOT_TRACK": "1", "DAGSTER_DISABLE_TELEMETRY": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_USER": pg.username,
            "DAGSTER_PG_PASSWORD": pg.password or "", "DAGSTER_PG_DB": pg.database, **extra}


def start_dagster(topology: "Topology", workspace_dir: Path) -> str:
    """Code server, webserver and daemon started; returns the GraphQL URL once the webserver serves
    the code location's asset graph."""
    # the instance's tables made once, before the processes would race to make them
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=topology.env, cwd=REPO, capture_output=True,
                   check=True)
    grpc_port, web_port = free_port(), free_port()
    workspace = workspace_dir / "workspace.yaml"
    workspace.write_text(f"load_from:\n  - grpc_server:\n      host: 127.0.0.1\n      port: {grpc_port}\n"
                         f"      location_name: trueup\n")
    topology.start("code-server", [str(BIN / CODE_SERVER[0]), *CODE_SERVER[1:], "-h", "127.0.0.1",
                                   "-p", str(grpc_port), *CODE_LOCATION_ARGS])
    topology.start("webserver", [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(web_port),
                                 "-w", str(workspace)])
    topology.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)])
    url = f"http://127.0.0.1:{web_port}/graphql"

    def graph_served():
        try:
            return gql(url, ASSETS_Q, timeout=10)["assetNodes"]
        except (requests.RequestException, AssertionError):
            return None

    wait_for("the webserver serving the code server's asset graph", graph_served, topology, 120)
    return url


def launch_partition(url: str, job: str, day: str, trigger: str) -> str:
    """Launch one partition of `job` as the UI does; returns the run id (QUEUED: the daemon starts it)."""
    params = {"selector": {"repositoryLocationName": "trueup", "repositoryName": "__repository__", "jobName": job},
              "runConfigData": {},
              "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day},
                                             {"key": "trueup/trigger", "value": trigger}]}}
    launched = gql(url, LAUNCH_Q, {"p": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    assert launched["run"]["status"] == "QUEUED"   # the queued run coordinator: the daemon starts it
    return launched["run"]["runId"]


def run_ended(url: str, run_id: str, topology: "Topology", timeout: float) -> str:
    def ended():
        run = gql(url, RUN_Q, {"id": run_id})["runOrError"]
        return run["status"] if run["status"] in ENDED else None

    return wait_for(f"run {run_id} ending", ended, topology, timeout)
