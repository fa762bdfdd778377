"""Great Expectations' own unexpected counts for a gate run, computed beside the caller.

The gate finds failing rows itself (set-based SQL) and must prove that GX counts the same.
GX on pandas is mostly Python: in a thread it fights the caller for the GIL (measured at 1M
rows: GX alone 3.5 s, the gate's own work alone 6 s, both in two threads 13–18 s). So by
default GX runs in a forked worker process, on the other core, fed chunk by chunk through a
pipe; where fork is unavailable it runs in a thread. `TRUEUP_GX_WORKER=thread|process` chooses.

Rules GX must see over the whole batch (uniqueness, references) are validated from the batch's
key columns, handed over once: a forked worker inherits them without a copy, and validates them
in pieces between chunks, so neither side waits for the other.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterator

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from connectors.errors import SyncError

from .batch import PARTITION, num_column
from .contracts.rules import Contract, Rule

# GX's uniqueness check needs ~300 bytes per row (1.4 GB at 5M rows), so it is validated in
# buckets of at most this many rows, split by a hash of the value: copies share a bucket, and
# the bucket counts add up to the batch's count exactly
UNIQUE_BUCKET_ROWS = 250_000
# reference rules over the whole batch go to GX in slices of at most this many rows
WHOLE_SLICE_ROWS = 1_000_000
SET_RULES = ("unique", "in_reference")
WORKER_ENV = "TRUEUP_GX_WORKER"


class GateDisagreement(SyncError):
    """Our row-level evaluation and GX disagree: a bug, never something to quarantine around."""

    error_class = "permanent"


class GxWorkerError(SyncError):
    """The GX worker failed for a reason other than a rule GX could not evaluate."""

    error_class = "permanent"


def rule_columns(rule: Rule) -> list[str]:
    """The columns GX reads for a rule (a range rule reads its numeric shadow)."""
    cols = [num_column(rule.column) if rule.kind == "between" else rule.column]
    if rule.other:
        cols.append(rule.other)
    if rule.when:
        cols.append(rule.when[0])
    if rule.kind == "unique":
        cols.append(PARTITION)
    return cols


def whole_batch_columns(contract: Contract) -> list[str]:
    """Columns GX validates over the whole batch at once, besides `_partition`: uniqueness
    needs every row, and a reference rule carries a value set whose cost GX pays per validation
    (it re-serialises the expectation's configuration, ~0.1 ms per value, many times over)."""
    return list(dict.fromkeys(c for r in contract.rules if r.kind in SET_RULES
                              for c in (r.column, r.when[0] if r.when else None) if c))


def worker_mode() -> str:
    mode = os.environ.get(WORKER_ENV, "").strip().lower() or "process"
    if mode not in ("process", "thread"):
        raise ValueError(f"{WORKER_ENV} must be 'process' or 'thread', not {mode!r}")
    if mode == "process" and "fork" not in multiprocessing.get_all_start_methods():
        return "thread"
    return mode


class GxTally:
    """Validates with GX and adds up its unexpected counts per rule (runs in the worker)."""

    def __init__(self, contract: Contract, references: dict[str, list[str]], validator=None):
        self.contract, self.references, self.validator = contract, references, validator
        self.rules = {r.id: r for r in contract.rules}
        self.counts = {r.id: 0 for r in contract.rules}
        self.success = True
        self.busy_s = 0.0   # time spent validating (the benchmark reports it)
        self.cpu_s = 0.0    # … of which on the CPU (the rest: waiting for a core or the GIL)
        self.busy_by: dict[str, float] = {}
        self._suites: dict[tuple[str, ...], object] = {}

    def validate(self, rule_ids: list[str], frame: pd.DataFrame, references: dict | None = None) -> None:
        started, cpu = time.perf_counter(), time.thread_time()
        try:
            self._validate(rule_ids, frame, references)
        finally:
            spent = time.perf_counter() - started
            self.cpu_s += time.thread_time() - cpu
            self.busy_s += spent
            group = rule_ids[0] if len(rule_ids) == 1 else f"{len(rule_ids)} row rules"
            self.busy_by[group] = self.busy_by.get(group, 0.0) + spent

    def _validate(self, rule_ids: list[str], frame: pd.DataFrame, references: dict | None) -> None:
        from .gx_suites import GxValidator, build_suite

        if self.validator is None:
            self.validator = GxValidator()
        rules = [self.rules[i] for i in rule_ids]
        key = tuple(rule_ids)
        if references is not None:   # a suite for this slice only
            suite = build_suite(self.contract, {**self.references, **references}, rules)
        else:
            if key not in self._suites:
                self._suites[key] = build_suite(self.contract, self.references, rules)
            suite = self._suites[key]
        # GX copies and hashes the frame it is given: give it only the columns the rules read
        cols = [c for c in dict.fromkeys(col for r in rules for col in rule_columns(r)) if c in frame.columns]
        result = self.validator.validate(suite, frame[cols])
        self.success = self.success and bool(result.success)
        for r in result.results:
            rule_id = r.expectation_config.meta["rule"]
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise GateDisagreement(f"{self.contract.name}: GX could not evaluate {rule_id}: "
                                       f"{r.exception_info.get('exception_message')}")
            self.counts[rule_id] += int(r.result.get("unexpected_count") or 0)

    def whole_pieces(self, rule_ids: list[str], holder: list[pd.DataFrame]) -> Iterator[tuple]:
        """The whole-batch validations, one (rule ids, frame, references) at a time: reference
        rules in slices of WHOLE_SLICE_ROWS, each with only the reference keys it uses (GX pays
        per value of the set; membership is the same), then uniqueness in hash buckets. GX's
        working memory is several times what it validates (an in-set check over 5M rows took
        +1.3 GB), hence the pieces."""
        frame = holder.pop()   # the holder's owner lets go: the frame goes when the pieces are done
        rules = [self.rules[i] for i in rule_ids]
        for rule in (r for r in rules if r.kind != "unique"):
            reference = pd.Series(self.references.get(rule.reference, []), dtype="str")
            for start in range(0, len(frame), WHOLE_SLICE_ROWS):
                piece = frame.iloc[start:start + WHOLE_SLICE_ROWS]
                used = pd.Series(piece[rule.column].dropna().unique(), dtype="str")
                yield [rule.id], piece, {rule.reference: used[used.isin(reference)].tolist()}
        unique = [r for r in rules if r.kind == "unique"]
        keep = [c for c in dict.fromkeys(col for r in unique for col in rule_columns(r)) if c in frame.columns]
        frame = frame[keep]   # the reference columns are done with: let them go
        for rule in unique:
            buckets = -(-len(frame) // UNIQUE_BUCKET_ROWS)
            if buckets <= 1:
                yield [rule.id], frame, None
                continue
            bucket = _value_buckets(frame[rule.column], buckets)
            for b in range(buckets):
                yield [rule.id], frame[bucket == b], None


def _value_buckets(values: pd.Series, buckets: int) -> np.ndarray:
    """A bucket per row from a hash of its value, so copies share a bucket. DuckDB hashes the
    Arrow strings in place (0.24 s, +120 MB at 5M rows; pandas' factorize or hashing took
    1-2 s and +650 MB to +1.3 GB, going through Python objects)."""
    try:
        table = pa.table({"v": pa.array(values, from_pandas=True)})
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = pa.table({"v": pa.array(values.astype(str), from_pandas=True)})
    con = duckdb.connect(":memory:")
    try:
        con.register("vals", table)
        return con.execute(f"SELECT hash(v) % {int(buckets)} AS b FROM vals").fetchnumpy()["b"].astype(np.int64)
    finally:
        con.close()


class GxCounts:
    """GX's counts for one gate run: whole-batch rules once (`submit_whole`), row rules chunk by
    chunk (`submit`), then `result()`. At most one chunk waits for GX, so memory stays bounded."""

    def __init__(self, contract: Contract, references: dict[str, list[str]], validator=None,
                 mode: str | None = None):
        self.contract = contract
        self.tally = GxTally(contract, references, validator)
        self.mode = mode or worker_mode()
        self.counts = self.tally.counts
        self.success = True
        self.busy_s = 0.0
        self.busy_by: dict[str, float] = {}
        self.worker_peak_mb = 0.0    # a process worker's own growth above what it inherited
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gx")
        self._pending: list[Future] = []
        self._proc = None
        self._conn = None

    # -- feeding ---------------------------------------------------------------------------
    def submit_whole(self, rules: list[Rule], frame: pd.DataFrame) -> None:
        """Call at most once, before `submit`. The caller must drop its own reference to `frame`."""
        ids = [r.id for r in rules] if not frame.empty else []
        if self.mode == "process" and self._start_process(ids, frame):
            return
        if ids:
            holder = [frame]
            self._pending.append(self._pool.submit(self._run_pieces, ids, holder))

    def submit(self, rules: list[Rule], frame: pd.DataFrame) -> None:
        if not rules or frame.empty:
            return
        # GX validates one chunk while the caller splits and writes the next: two chunks alive at most
        self.drain()
        ids = [r.id for r in rules]
        if self.mode == "process" and (self._proc is not None or self._start_process([], frame.iloc[:0])):
            self._pending.append(self._pool.submit(self._round_trip, ("rows", ids, frame)))
        else:
            self._pending.append(self._pool.submit(self.tally.validate, ids, frame))

    def drain(self) -> None:
        """Wait until every chunk handed over is validated (in process mode, whole-batch pieces
        may still be going on)."""
        while self._pending:
            self._pending.pop(0).result()

    def result(self) -> tuple[dict[str, int], bool]:
        try:
            self.drain()
            if self._proc is not None:
                counts, success, busy_s, busy_by, peak = self._pool.submit(self._round_trip, ("finish",)).result()
                self.counts, self.success, self.busy_s, self.busy_by = counts, success, busy_s, busy_by
                self.worker_peak_mb = peak
            else:
                t = self.tally
                self.counts, self.success, self.busy_s, self.busy_by = t.counts, t.success, t.busy_s, t.busy_by
        finally:
            self.abandon()
        return self.counts, self.success

    def abandon(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.terminate()
            self._proc.join(10)
            self._conn.close()
            self._proc = None

    # -- thread mode ------------------------------------------------------------------------
    def _run_pieces(self, ids: list[str], holder: list[pd.DataFrame]) -> None:
        for piece in self.tally.whole_pieces(ids, holder):
            self.tally.validate(*piece)

    # -- process mode -----------------------------------------------------------------------
    def _start_process(self, whole_ids: list[str], frame: pd.DataFrame) -> bool:
        """Fork the worker; False (and thread mode from now on) where a process cannot start,
        e.g. inside a daemonic process, which may not have children."""
        from . import gx_suites  # noqa: F401 - GX is imported once, here, and inherited by the fork

        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        holder = [frame]
        proc = ctx.Process(target=_serve, args=(child, self.tally, whole_ids, holder),
                           name=f"gx-{self.contract.name}", daemon=True)
        try:
            proc.start()
        except (AssertionError, OSError):
            self._conn.close()
            child.close()
            self.mode = "thread"
            return False
        self._proc = proc
        holder.clear()   # the child has its own copy of the frame (copy-on-write); this one goes
        child.close()
        return True

    def _round_trip(self, message: tuple):
        try:
            self._conn.send_bytes(pickle.dumps(message, protocol=5))
            kind, *payload = self._conn.recv()
        except (EOFError, BrokenPipeError, ConnectionResetError):
            early = self._early_error()
            if early:
                raise early from None
            self._proc.join(5)
            raise GxWorkerError(f"{self.contract.name}: the GX worker process ended without an answer "
                                f"(exit code {self._proc.exitcode}; out of memory?)") from None
        if kind == "error":
            raise _worker_error(*payload)
        return payload[0]

    def _early_error(self) -> Exception | None:
        """The error a worker sent before it ended (a whole-batch piece failed between chunks)."""
        try:
            if self._conn.poll(1):
                kind, *payload = self._conn.recv()
                if kind == "error":
                    return _worker_error(*payload)
        except (EOFError, OSError):
            pass
        return None


def _worker_error(name: str, text: str) -> Exception:
    return (GateDisagreement if name == "GateDisagreement" else GxWorkerError)(text)


def _serve(conn, tally: GxTally, whole_ids: list[str], holder: list[pd.DataFrame]) -> None:
    """The worker process: validates chunks as they come and, between them, the whole-batch
    pieces; answers each chunk when it is done and the totals on "finish"."""
    start_mb = _status_mb("VmRSS")
    pieces = tally.whole_pieces(whole_ids, holder) if whole_ids else None
    try:
        while True:
            if pieces is not None and not conn.poll():
                piece = next(pieces, None)
                if piece is None:
                    pieces = None
                else:
                    tally.validate(*piece)
                continue
            kind, *args = pickle.loads(conn.recv_bytes())
            if kind == "rows":
                tally.validate(*args)
                conn.send(("done", None))
            elif kind == "finish":
                for piece in pieces or ():
                    tally.validate(*piece)
                grown = max(0.0, _status_mb("VmHWM") - start_mb)
                conn.send(("result", (tally.counts, tally.success, tally.busy_s, tally.busy_by, grown)))
                return
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            text = str(exc) if isinstance(exc, GateDisagreement) else f"{type(exc).__name__}: {exc}"
            conn.send(("error", type(exc).__name__, text))
        except OSError:
            pass


def _status_mb(field: str) -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0
