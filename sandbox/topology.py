"""Trueup's production topology as processes on one machine: a PostgreSQL-backed Dagster instance
(orchestration/dagster_production.yaml), the code location on its own gRPC server, and
`dagster-webserver` and `dagster-daemon run` over a gRPC workspace — each process in a session of
its own, with its log. `make prod-local` (sandbox/prod_local.py) brings it up for a person; the
topology and Celery tests (tests/e2e) drive it. The Dockerfile, compose.yaml and the Helm values
start the same entry points."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests
from sqlalchemy.engine import make_url

import trueup.orchestration as _orchestration

BIN = Path(sys.executable).parent
PRODUCTION_YAML = Path(_orchestration.__file__).with_name("dagster_production.yaml")
#: the code location's entry point
CODE_SERVER = ["dagster", "code-server", "start"]
CODE_LOCATION_ARGS = ["-m", "trueup.orchestration.definitions", "--location-name", "trueup"]
ASSETS_Q = "{ assetNodes { assetKey { path } } }"


class TopologyError(RuntimeError):
    """A process of the topology exited, or what was awaited did not happen in time (with the logs)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gql(url: str, query: str, variables: dict | None = None, timeout: float = 30) -> dict:
    """One GraphQL request to the webserver; its `data` (a GraphQL error is an AssertionError)."""
    resp = requests.post(url, json={"query": query, "variables": variables or {}}, timeout=timeout)
    resp.raise_for_status()
    body = resp.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


class Topology:
    """The long-lived processes, each in a session of its own, with its log under `logs`."""

    def __init__(self, env: dict[str, str], logs: Path, cwd: Path | None = None):
        self.env, self.logs, self.cwd, self.procs = env, logs, cwd, {}
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, argv: list[str]) -> None:
        log = open(self.logs / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen(argv, cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise TopologyError(f"{name} exited {proc.returncode}:\n{self.tail(name)}")

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


def wait_for(what: str, probe, topology: Topology, timeout: float, every: float = 2.0):
    """`probe()`'s first truthy answer; TopologyError (with the logs) if a process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topology.alive()
        got = probe()
        if got:
            return got
        time.sleep(every)
    raise TopologyError(f"{what} within {timeout:.0f} s; logs in {topology.logs}:\n"
                        + "\n".join(f"--- {n}\n{topology.tail(n, 1500)}" for n in topology.procs))


def production_env(settings_env: dict[str, str], dagster_db_url: str, **extra: str) -> dict[str, str]:
    """The environment of every process: Trueup's settings (`settings_env`, DAGSTER_HOME included),
    the production instance file in DAGSTER_HOME with its storage in `dagster_db_url`
    (DAGSTER_PG_*), this venv's tools on PATH, telemetry off."""
    home = Path(settings_env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    pg = make_url(dagster_db_url)
    return {**os.environ, **settings_env, "DO_NOT_TRACK": "1", "DAGSTER_DISABLE_TELEMETRY": "1",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "DAGSTER_PG_HOST": pg.host, "DAGSTER_PG_PORT": str(pg.port), "DAGSTER_PG_USER": pg.username,
            "DAGSTER_PG_PASSWORD": pg.password or "", "DAGSTER_PG_DB": pg.database, **extra}


def start_dagster(topology: Topology, workspace_dir: Path, web_port: int | None = None) -> str:
    """Code server, webserver (127.0.0.1) and daemon started; returns the GraphQL URL once the
    webserver serves the code location's asset graph."""
    # the instance's tables made once, before the three processes would race to make them
    subprocess.run([str(BIN / "dagster"), "instance", "migrate"], env=topology.env, cwd=topology.cwd,
                   capture_output=True, check=True)
    grpc_port, web_port = free_port(), web_port or free_port()
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
