"""What the topology and Celery tests (tests/e2e) add to the production topology's processes
(trueup.sandbox.topology): the GraphQL queries they ask, a partition launched as the UI launches
it, a run awaited, the schedule's minute."""
from __future__ import annotations

import datetime as dt
from pathlib import Path

from trueup.sandbox.topology import (ASSETS_Q, BIN, CODE_LOCATION_ARGS, CODE_SERVER, PRODUCTION_YAML,  # noqa: F401
                                     Topology, TopologyError, gql, start_dagster, wait_for)
from trueup.sandbox.topology import production_env as _production_env

REPO = Path(__file__).resolve().parents[1]

LAUNCH_Q = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
  ... on LaunchRunSuccess { run { runId status } }
  ... on PythonError { message } ... on RunConfigValidationInvalid { errors { message } } } }"""
RUN_Q = """query($id: ID!) { runOrError(runId: $id) { __typename
  ... on Run { status tags { key value } } ... on PythonError { message } } }"""
SCHEDULED_Q = """query { runsOrError(filter: {tags: [{key: "dagster/schedule_name", value: "nightly_sync_schedule"}]})
  { __typename ... on Runs { results { runId status tags { key value } } } } }"""
ENDED = ("SUCCESS", "FAILURE", "CANCELED")


def schedule_time(now: dt.datetime) -> dt.datetime:
    """The first whole minute at least 80 s ahead: after the daemon's first look at the schedule
    (a schedule's ticks before that are not caught up). If the run launched from the UI is still
    going then, the scheduled one waits in the queue (one run writing business days at a time)."""
    ahead = now + dt.timedelta(seconds=80)
    return ahead.replace(second=0, microsecond=0) + (dt.timedelta(minutes=1) if ahead.second or ahead.microsecond
                                                     else dt.timedelta(0))


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


def production_env(world, dagster_db_url: str, **extra: str) -> dict[str, str]:
    """The topology's environment for a test world (its settings, DAGSTER_HOME included)."""
    return _production_env(world.env, dagster_db_url, **extra)
