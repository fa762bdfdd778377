"""Live progress of a Dagster run, read back from the instance's event log while it executes.

`RunProgress` is handed to `runner.run_job(..., progress=...)`. While the run executes (in
the calling thread), a background thread polls the run's step events — the same records
the Dagster UI shows — and prints one line per finished step: a counter, ✓ or ✗, the step
and its seconds (a failure adds its one-line reason). On a terminal a transient line also
shows the step that is running; when stdout is not a terminal (CI logs, pipes) only the
plain lines are printed, never carriage-return animation.

Whatever else the run writes to stdout/stderr (dbt's own log, Dagster's console logger) is
appended to `log_path` instead, so the progress stays readable; TRUEUP_DEBUG=1 keeps it on
the terminal.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Iterator


@dataclass
class StepResult:
    step: str
    ok: bool
    seconds: float
    reason: str | None = None


@dataclass
class RunProgress:
    """Print a run's steps as they finish. One instance may watch several runs, one at a time."""

    out: IO[str] | None = None           # default: sys.stdout when the run starts
    indent: str = "     "
    interval: float = 0.5                # seconds between polls of the event log
    log_path: Path | None = None         # where the run's own output goes (None: left alone)
    tty: bool | None = None              # default: out.isatty()
    steps: list[StepResult] = field(default_factory=list)   # of the last run watched
    planned: int | None = None           # steps in the last run's plan

    def __post_init__(self) -> None:
        self._running: dict[str, float] = {}   # step -> start time, of steps not finished yet

    @property
    def failed(self) -> list[StepResult]:
        return [s for s in self.steps if not s.ok]

    @property
    def not_run(self) -> int:
        """Steps of the plan that never started (an upstream step failed)."""
        return max(0, (self.planned or 0) - len(self.steps) - len(self._running))

    def __call__(self, instance, run_id: str):
        return self._watch(instance, run_id)

    @contextlib.contextmanager
    def _watch(self, instance, run_id: str) -> Iterator["RunProgress"]:
        out = self.out or sys.stdout
        self._out = out
        self._tty = out.isatty() if self.tty is None else self.tty
        self._ok_mark, self._fail_mark, self._more = _marks(out)
        self.steps, self.planned, self._running = [], None, {}
        self._cursor: str | None = None
        self._live = False
        self._t0 = time.monotonic()
        stop = threading.Event()
        poller = threading.Thread(target=self._poll_until, args=(instance, run_id, stop),
                                  name=f"progress-{run_id[:8]}", daemon=True)
        poller.start()
        try:
            with _run_output_to(self.log_path):
                yield self
        finally:
            stop.set()
            poller.join()
            self._clear_live()
            out.flush()

    # -- the polling thread -------------------------------------------------------------
    def _poll_until(self, instance, run_id: str, stop: threading.Event) -> None:
        from dagster import DagsterInstance

        try:  # its own instance: storage connections are not shared across threads
            reader = DagsterInstance.from_ref(instance.get_ref())
        except Exception:  # noqa: BLE001 - an ephemeral instance has no ref: read the run's own
            reader = contextlib.nullcontext(instance)
        with reader as events:
            while True:
                finishing = stop.is_set()   # read first: the last poll sees every event
                try:
                    self._poll(events, run_id)
                except Exception:  # noqa: BLE001 - progress must never break the run it shows
                    pass
                if finishing:
                    return
                if self._tty:
                    self._show_live()
                stop.wait(self.interval)

    def _poll(self, instance, run_id: str) -> None:
        from dagster import DagsterEventType as T

        if self.planned is None:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.execution_plan_snapshot_id:
                snap = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
                self.planned = len(snap.steps)
        while True:
            conn = instance.get_records_for_run(run_id, cursor=self._cursor,
                                                of_type={T.STEP_START, T.STEP_SUCCESS, T.STEP_FAILURE})
            for rec in conn.records:
                self._on_event(rec.event_log_entry)
            self._cursor = conn.cursor
            if not conn.has_more:
                return

    def _on_event(self, entry) -> None:
        from trueup.orchestration.runner import failure_reason

        event = entry.dagster_event
        step = entry.step_key or "?"
        if event.is_step_start:
            self._running[step] = entry.timestamp
            return
        started = self._running.pop(step, entry.timestamp)
        reason = failure_reason(event) if event.is_step_failure else None
        result = StepResult(step, event.is_step_success, entry.timestamp - started, reason)
        self.steps.append(result)
        self._print_step(result)

    # -- output -------------------------------------------------------------------------
    def _print_step(self, r: StepResult) -> None:
        self._clear_live()
        n = len(self.steps)
        count = f"[{n:>2}/{self.planned}]" if self.planned else f"[{n:>2}]"
        line = f"{self.indent}{count} {self._ok_mark if r.ok else self._fail_mark} {r.step:<30} {r.seconds:>6.1f}s"
        if r.reason:
            line += f"  {r.reason}"
        self._out.write(line + "\n")
        self._out.flush()

    def _show_live(self) -> None:
        now = time.time()
        if self._running:
            what = ", ".join(f"{step} {now - t:.0f}s" for step, t in sorted(self._running.items()))
        else:
            what = "planning the run" if not self.steps else "finishing"
        text = f"{self.indent}{self._more} {what} (run {time.monotonic() - self._t0:.0f}s)"
        width = _width(self._out)
        self._out.write("\r\033[K" + text[:width - 1])
        self._out.flush()
        self._live = True

    def _clear_live(self) -> None:
        if self._live:
            self._out.write("\r\033[K")
            self._live = False


def _marks(out) -> tuple[str, str, str]:
    """✓ ✗ … where the stream can encode them, else plain ASCII."""
    try:
        "✓✗…".encode(getattr(out, "encoding", None) or "ascii")
        return "✓", "✗", "…"
    except (UnicodeEncodeError, LookupError):
        return "ok", "FAILED", "..."


def _width(out) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except (OSError, ValueError, AttributeError):
        return 100


_LOGS: dict[Path, IO[str]] = {}


@contextlib.contextmanager
def _run_output_to(log_path: Path | None) -> Iterator[None]:
    """Send the run's own stdout/stderr writes to `log_path` (appending) for the duration.

    The file stays open until the process ends: libraries imported during a run may bind
    logging handlers to the stream they found (dbt's tracker calls logging.basicConfig)."""
    if log_path is None or os.environ.get("TRUEUP_DEBUG"):
        yield
        return
    fh = _LOGS.get(log_path)
    if fh is None or fh.closed:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        fh = _LOGS[log_path] = open(log_path, "a", encoding="utf-8", buffering=1)
    with contextlib.redirect_stdout(fh), contextlib.redirect_stderr(fh):
        yield
