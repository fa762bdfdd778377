"""Run Dagster jobs from the command line through the Dagster instance, so that every run
the CLI starts is recorded in DAGSTER_HOME and shows in the UI like any other."""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

from trueup.orchestration.config import Settings

LOCAL_INSTANCE_YAML = Path(__file__).with_name("dagster_local.yaml")


def ensure_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME exists and has a dagster.yaml (telemetry off, run queue)."""
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copy(LOCAL_INSTANCE_YAML, home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    return home


class RunRefused(RuntimeError):
    """The run was not started (another run holds one of its business days); the message is the story."""


def _run_days(tags) -> tuple[str, str] | None:
    """The business days a run covers, from its tags (one day, or a range)."""
    day = tags.get("trueup/business_date") or tags.get("dagster/partition")
    if day:
        return day, day
    lo, hi = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    return (lo, hi) if lo and hi else None


@contextlib.contextmanager
def business_days_claimed(settings: Settings, start: dt.date, end: dt.date, run_id: str):
    """One active run per business day, whoever starts it. A run started here (execute_in_process)
    is never queued, so the run queue's per-day limits (dagster.yaml) cannot hold it back: it takes
    a lock per day for its whole length — a PostgreSQL advisory lock when the warehouse is
    PostgreSQL (across machines), else a file lock under TRUEUP_HOME. Then `refuse_if_running`
    checks Dagster's own record of runs in progress (the schedule's, the sensors', the UI's).
    A day held either way refuses the run with one line: which run holds it, since when."""
    from trueup.connectors.locks import LockBusy, try_lock
    from trueup.orchestration.warehouse_session import warehouse_session

    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    days = [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]
    # each day's advisory lock lives on its own session: a range needs one connection per day,
    # more than the warehouse's pool (2 + 2) gives; the warehouse's own URL names its driver
    engine = None
    if settings.warehouse_is_postgres:
        with warehouse_session(settings.warehouse_url) as wh:
            engine = sa.create_engine(wh.engine.url, poolclass=NullPool)
    held = []
    try:
        for day in days:
            try:
                held.append(try_lock(f"business day {day}", home=settings.home, owner=f"run {run_id}",
                                     pg_engine=engine))
            except LockBusy as exc:
                raise RunRefused(f"{exc}; not starting a second run of that day") from None
        yield
    finally:
        for lk in reversed(held):
            lk.release()
        if engine is not None:
            engine.dispose()


@contextlib.contextmanager
def open_instance(settings: Settings):
    """The Dagster instance; opened under a lock, because several processes creating a fresh
    instance's SQLite storage at once collide on its schema stamp."""
    from dagster import DagsterInstance

    from trueup.connectors.locks import lock

    ensure_dagster_home(settings)
    with lock("dagster instance", home=settings.home, owner="trueup"):
        instance = DagsterInstance.get()
    with instance:
        ensure_pool_limits(instance)
        yield instance


def ensure_pool_limits(instance) -> None:
    """Give the pool `business_day_writes` the instance's default limit now, if it has none yet.
    The run queue does this itself when it first sees a queued run of the pool — but it reads the
    limits before, so on that first pass it would let the run start beside a run the CLI executes
    itself (never queued). A limit set by hand (UI, `dagster instance concurrency set`) is kept."""
    from trueup.assets.pools import BUSINESS_DAY_WRITES

    storage = instance.event_log_storage
    default = instance.global_op_concurrency_default_limit
    if not default or not storage.supports_global_concurrency_limits:
        return
    limit = {pool.name: pool for pool in storage.get_pool_limits()}.get(BUSINESS_DAY_WRITES)
    if limit is None or (limit.from_default and limit.limit != default):
        storage.initialize_concurrency_limit_to_default(BUSINESS_DAY_WRITES)


def refuse_if_running(instance, start: dt.date, end: dt.date, run_id: str) -> None:
    """Raise RunRefused if a run Dagster knows as queued or in progress covers one of the days."""
    from dagster import DagsterRunStatus, RunsFilter

    lo, hi = start.isoformat(), end.isoformat()
    active = instance.get_run_records(filters=RunsFilter(statuses=[
        DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING,
        DagsterRunStatus.STARTED]))
    for rec in active:
        span = _run_days(rec.dagster_run.tags)
        if span and span[0] <= hi and lo <= span[1] and rec.dagster_run.run_id != run_id:
            since = rec.start_time or rec.create_timestamp.timestamp()
            since_text = dt.datetime.fromtimestamp(since, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
            raise RunRefused(f"business day {max(span[0], lo)} is held by run {rec.dagster_run.run_id} "
                             f"({rec.dagster_run.status.value.lower()}) since {since_text}; "
                             f"not starting a second run of that day")


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    partitions: str
    error: str | None
    summary: str | None = None
    log_path: Path | None = None   # the run's whole story, stack traces included


def run_job(settings: Settings, job_name: str, start: dt.date, end: dt.date | None = None,
            run_config: dict | None = None, extra_tags: dict | None = None,
            progress: Callable[[Any, str], ContextManager] | None = None) -> RunOutcome:
    """Run `job_name` for one day, or for the range start..end in a single run.

    `progress(instance, run_id)`, if given, is entered around the execution (see
    orchestration/progress.py: it follows the run's events while it executes)."""
    ensure_dagster_home(settings)
    tags = {"trueup/correlation_id": str(uuid.uuid4()), "trueup/trigger": "cli", **(extra_tags or {})}
    kwargs: dict = {}
    if end is None or end == start:
        kwargs["partition_key"] = start.isoformat()
        tags["trueup/business_date"] = start.isoformat()
        label = start.isoformat()
    else:
        tags["dagster/asset_partition_range_start"] = start.isoformat()
        tags["dagster/asset_partition_range_end"] = end.isoformat()
        label = f"{start} .. {end}"
    run_config = dict(run_config or {})
    if not os.environ.get("TRUEUP_DEBUG"):
        # the CLI prints its own account (one line on failure); every event, stack traces included,
        # stays in the run's event log (the UI) and is copied to $TRUEUP_HOME/logs/<run id>.log
        run_config.setdefault("loggers", {"console": {"config": {"log_level": "CRITICAL"}}})
    run_id = str(uuid.uuid4())
    with business_days_claimed(settings, start, end or start, run_id), open_instance(settings) as instance:
        refuse_if_running(instance, start, end or start, run_id)
        # imported and built once the days are this run's (a refused run answers without the ~2.5 s
        # of loading Dagster's dbt integration and the definitions); built now, not at import:
        # partitions follow the environment of this run
        from trueup.orchestration.definitions import build_definitions

        job = build_definitions().resolve_job_def(job_name)
        with progress(instance, run_id) if progress else contextlib.nullcontext():
            result = job.execute_in_process(instance=instance, tags=tags, run_config=run_config,
                                            raise_on_error=False, run_id=run_id, **kwargs)
        log_path = write_run_log(settings, instance, result.run_id)
    error = None
    if not result.success:
        error = _first_failure(result)
    return RunOutcome(result.run_id, result.success, label, error, log_path=log_path)


def write_run_log(settings: Settings, instance, run_id: str) -> Path:
    """The run's whole story (every event, failures with their stack traces) as text in
    $TRUEUP_HOME/logs/<run id>.log (folder 0700, file 0600: it may name customers)."""
    import datetime as _dt

    folder = settings.home / "logs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder, 0o700)
    path = folder / f"{run_id}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        for entry in instance.all_logs(run_id):
            at = _dt.datetime.fromtimestamp(entry.timestamp, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            event = entry.dagster_event
            kind = event.event_type_value if event is not None else logging_level_name(entry.level)
            fh.write(f"{at} {kind} {entry.step_key or '-'} {entry.message or ''}\n")
            if event is not None and event.is_step_failure and event.step_failure_data.error is not None:
                err = event.step_failure_data.error
                while err is not None:
                    fh.write("    " + err.to_string().replace("\n", "\n    ") + "\n")
                    err = err.cause
    return path


def logging_level_name(level) -> str:
    import logging

    return logging.getLevelName(level) if isinstance(level, int) else str(level)


def _first_failure(result) -> str:
    for event in result.all_events:
        if event.is_step_failure:
            return f"{event.step_key}: {failure_reason(event)}"
    return "run failed"


def failure_reason(event) -> str:
    """The one-line reason of a STEP_FAILURE event."""
    data = event.step_failure_data
    err = data.error
    # a dagster.Failure carries the one-line reason as its description
    msg = data.user_failure_data.description if data.user_failure_data else None
    if not msg and err:
        while err.cause is not None:  # the user's exception, not Dagster's wrapper
            err = err.cause
        msg = f"{err.cls_name}: {err.message.strip().splitlines()[-1]}" if err.message.strip() else err.cls_name
    return msg or "failed"


def run_unpartitioned_job(settings: Settings, job_name: str, run_config: dict | None = None) -> RunOutcome:
    """Run an op job (replay, approvals) through the instance; its first op output is the summary."""
    ensure_dagster_home(settings)
    from dagster import DagsterInstance

    from trueup.orchestration.definitions import build_definitions

    job = build_definitions().resolve_job_def(job_name)
    tags = {"trueup/correlation_id": str(uuid.uuid4()), "trueup/trigger": "cli"}
    run_config = dict(run_config or {})
    if not os.environ.get("TRUEUP_DEBUG"):
        run_config.setdefault("loggers", {"console": {"config": {"log_level": "CRITICAL"}}})
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=False)
    summary = None
    if result.success:
        node = job.graph.node_names()[0]
        summary = str(result.output_for_node(node))
    return RunOutcome(result.run_id, result.success, "-", None if result.success else _first_failure(result),
                      summary)
