"""`trueup nightly`, `trueup backfill` and `trueup sync`: run a partitioned job through the Dagster
instance (orchestration/runner.py) and tell what it did — as text (the default), as one JSON
object (`--json`, for scripts) or not at all on success (`--quiet`, for cron).

As text, each step prints one line as it finishes (✓/✗, seconds: orchestration/progress.py),
while dbt's and Dagster's own output goes to $TRUEUP_HOME/logs/cli-output.log; then the
summary, and the run's page in the Dagster UI.

In every mode a failed run ends with one line on stderr and exit code 1; `--json` prints its
object (`"success": false`) first. With `--json` or `--quiet` whatever the run itself writes to
stdout/stderr (libraries, subprocesses) goes to $TRUEUP_HOME/logs/<run id>.output.log, so stdout
holds the JSON object and nothing else.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import sys
from typing import Iterator

from trueup.orchestration.commands import CliError, iso_date
from trueup.orchestration.config import Settings

from trueup.quality.reports import run_url


def add_output_flags(parser) -> None:
    """--json / --quiet on a run command (one or the other)."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--json", action="store_true",
                   help="print one JSON object: run id, steps with status and seconds, rows synced, quarantined, "
                        "written and held, open breaks and money at risk")
    g.add_argument("--quiet", action="store_true", help="print nothing on success; on failure one line on stderr")


def add_sync_arguments(parser) -> None:
    parser.add_argument("--date", type=iso_date, default=None, help="business day (default: yesterday)")
    parser.add_argument("--start", type=iso_date, default=None, help="first day of a range (with --end)")
    parser.add_argument("--end", type=iso_date, default=None, help="last day of a range (with --start)")


# -- the commands ------------------------------------------------------------------------
def cmd_nightly(args, settings: Settings) -> None:
    from trueup.orchestration.crm_check import require_crm

    require_crm(settings)   # reachable, and the token accepted: fail in seconds, not after retries
    day = args.date or (dt.date.today() - dt.timedelta(days=1))
    run_and_report(args, settings, "nightly_sync", day)


def cmd_backfill(args, settings: Settings) -> None:
    from trueup.orchestration.crm_check import require_crm

    require_crm(settings)
    start, end = args.start, args.end
    if start is None or end is None:
        # the history as configured: TRUEUP_START_DATE .. TRUEUP_BACKFILL_END (a seeded sandbox sets both)
        if settings.backfill_end is None:
            raise CliError("no dates given and TRUEUP_BACKFILL_END is not set: pass --start and --end")
        start = start or settings.start_date
        end = end or settings.backfill_end
    if end < start:
        raise CliError(f"--end {end} is before --start {start}")
    run_and_report(args, settings, "nightly_sync", start, end)


def cmd_sync(args, settings: Settings) -> None:
    """Ingest and gates only (the `sync_and_gate` job): the warehouse catches up, no system of
    record is written, no dbt model is built."""
    from trueup.orchestration.crm_check import require_crm

    if args.date and (args.start or args.end):
        raise CliError("give --date or --start/--end, not both")
    if (args.start is None) != (args.end is None):
        raise CliError("--start and --end go together (or give --date for one day)")
    if args.start and args.end < args.start:
        raise CliError(f"--end {args.end} is before --start {args.start}")
    require_crm(settings)
    start = args.start or args.date or (dt.date.today() - dt.timedelta(days=1))
    run_and_report(args, settings, "sync_and_gate", start, args.end)


# -- running and reporting ---------------------------------------------------------------
def run_and_report(args, settings: Settings, job: str, start: dt.date, end: dt.date | None = None) -> None:
    from trueup.orchestration.runner import run_job

    machine = args.json or args.quiet
    if machine:
        progress = lambda instance, run_id: output_aside(settings, run_id)   # noqa: E731
    else:   # one line per finished step as it finishes; what the run itself prints goes to a log
        from trueup.orchestration.progress import RunProgress

        progress = RunProgress(log_path=cli_output_log(settings))
        print(f"{job} {start}{'' if end in (None, start) else f'..{end}'}: running (Dagster UI: `trueup ui`)",
              flush=True)
    outcome = run_job(settings, job, start, end, progress=progress)
    if not machine and progress.not_run:
        print(f"{progress.indent}{progress.not_run} more step(s) not run: a step they depend on failed", flush=True)
    report = run_report(settings, job, outcome)
    if args.json:
        print(json.dumps(report, default=str))
    elif not args.quiet:
        print(report_text(settings, report))
    if not outcome.success:
        raise CliError(f"{outcome.error or 'run failed'} (run {outcome.run_id}; full log: {outcome.log_path})")


def run_report(settings: Settings, job: str, outcome) -> dict:
    """What the run did, as one dict: the `--json` object, and what the text is made of."""
    from trueup.orchestration.run_report import run_totals

    return {"run_id": outcome.run_id, "job": job, "partitions": outcome.partitions, "success": outcome.success,
            "error": outcome.error, "log_path": str(outcome.log_path) if outcome.log_path else None,
            "ui_url": run_url(outcome.run_id),
            "steps": step_results(settings, outcome.run_id), **run_totals(settings, outcome.run_id)}


def report_text(settings: Settings, report: dict) -> str:
    from trueup.orchestration.run_report import digest_text, run_summary

    return "\n".join([f"run {report['run_id']} ({report['partitions']}): "
                      f"{'success' if report['success'] else 'FAILED'}",
                      run_summary(settings, report["run_id"]),
                      f"  {digest_text(report, loads=True)}",
                      f"  in the Dagster UI: {report['ui_url']}  (`trueup ui` serves it)"])


def cli_output_log(settings: Settings):
    """Where the run's own output (dbt's, Dagster's console logger) goes while the CLI shows its
    progress: $TRUEUP_HOME/logs/cli-output.log."""
    folder = settings.home / "logs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder / "cli-output.log"


def step_results(settings: Settings, run_id: str) -> list[dict]:
    """The run's steps as Dagster recorded them, in the order they started: status (success,
    failure, skipped) and seconds; the planned steps that never started (after a failure) last,
    as not_run."""
    from trueup.orchestration.runner import open_instance

    with open_instance(settings) as instance:
        stats = instance.get_run_step_stats(run_id)
        run = instance.get_run_by_id(run_id)
        planned = []
        if run is not None and run.execution_plan_snapshot_id:
            snap = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
            planned = [s.key for s in snap.steps]
    out = []
    for s in sorted(stats, key=lambda s: (s.start_time or 0, s.step_key)):
        seconds = round(s.end_time - s.start_time, 2) if s.start_time and s.end_time else None
        out.append({"step": s.step_key, "status": s.status.value.lower() if s.status else "unknown",
                    "seconds": seconds})
    seen = {s["step"] for s in out}
    return out + [{"step": k, "status": "not_run", "seconds": None} for k in planned if k not in seen]


@contextlib.contextmanager
def output_aside(settings: Settings, run_id: str) -> Iterator[None]:
    """While the run executes, its stdout and stderr — Python's and the file descriptors that
    subprocesses inherit — go to logs/<run id>.output.log (0600); removed after if empty."""
    folder = settings.home / "logs"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{run_id}.output.log"
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    saved = [os.dup(1), os.dup(2)]
    try:
        with os.fdopen(os.dup(fd), "w", buffering=1) as fh, contextlib.redirect_stdout(fh), \
                contextlib.redirect_stderr(fh):
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            try:
                yield
            finally:
                fh.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (*saved, fd):
            os.close(f)
        if path.stat().st_size == 0:
            path.unlink()
