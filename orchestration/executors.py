"""Which executor the partitioned jobs run their steps with: TRUEUP_EXECUTOR, read when the code
location loads (like the partitions).

- `in_process` (default): every step in the run's process, one after another. The only choice with
  a DuckDB warehouse, which admits one writing process at a time; and on a small machine a process
  per step costs more than it saves (~3 s each, measured on 2 cores).
- `multiprocess`: Dagster's multiprocess executor, each step in a process of its own on the run's
  machine, independent steps at the same time (PostgreSQL warehouse).
- `celery`: Dagster's Celery executor (`dagster-celery`, the `distributed` extra): each step is a
  Celery task on a Redis broker (TRUEUP_CELERY_BROKER, also the result backend), run by whichever
  worker (`dagster-celery worker start -A dagster_celery.app -y orchestration/celery_worker.yaml`)
  takes it, on this machine or another (PostgreSQL warehouse and Dagster instance, shared).

A run the CLI executes itself (`trueup nightly`, `execute_in_process`) always runs in process; the
executor applies to the runs Dagster launches (schedule, sensors, UI)."""
from __future__ import annotations

from typing import Mapping

from dagster import ExecutorDefinition, in_process_executor, multiprocess_executor

from trueup.orchestration.config import ConfigError, executor_setting

#: the broker URL (it may hold a password) is read by Dagster from this environment variable when a
#: run starts and by the workers when they start; never written into run config or definitions, and
#: not taken from the settings file (Dagster reads the environment only)
CELERY_BROKER_ENV = "TRUEUP_CELERY_BROKER"


def partitioned_job_executor(env: Mapping[str, str] | None = None) -> ExecutorDefinition:
    """The executor of the nightly, sync, export and reconciliation jobs."""
    name = executor_setting(env)
    if name == "in_process":
        return in_process_executor
    if name == "multiprocess":
        return multiprocess_executor
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise ConfigError("TRUEUP_EXECUTOR=celery needs the distributed extra "
                          "(`uv sync --extra distributed`, or `pip install 'trueup[distributed]'`)") from None
    return celery_executor.configured({"broker": {"env": CELERY_BROKER_ENV}, "backend": {"env": CELERY_BROKER_ENV}},
                                      name="celery")
