"""Great Expectations' own unexpected counts for a gate run, computed beside the caller.

The gate finds failing rows itself (set-based SQL) and must prove that GX counts the same.
GX on pandas is mostly Python: in a thread it fights the caller for the GIL (measured at 1M
rows: GX alone 3.5 s, the gate's own work alone 6 s, both in two threads 13–18 s). So by
default GX runs in a forked worker process, on the other core, fed chunk by chunk through a
pipe; for a batch under SMALL_BATCH_ROWS, and where fork is unavailable, it runs in a thread.
`TRUEUP_GX_WORKER=thread|process` chooses for every batch.

Rules GX must see over more than a chunk (uniqueness, references: their kind's scope,
quality/rule_kinds.py) are validated from the key columns the worker keeps from every chunk:
references in slices as they fill up, uniqueness once the batch is complete — while the
caller writes the passed rows.

The worker protocol (the one description of it; docs/quality.md points here)
---------------------------------------------------------------------------
`GxCounts` (the gate's side) forks `_serve` (the worker) once per gate run, on first `submit`.
What the worker needs to know of the run — the contract, the reference key sets, the GX
validator, the batch's size, the spill directory — it inherits through the fork, in the
`GxTally` it is given; nothing of that crosses the channel.

Channel: one duplex `multiprocessing.Pipe` (its two `Connection`s), in order, one message at
a time each way. Every message is a tuple whose first item names it.

gate → worker (`Connection.send_bytes` of `pickle.dumps(message, protocol=5)`, written by one
sender thread, so the gate never blocks on a busy worker):
  ("rows", table)   one chunk's live rows, raw (a `pyarrow.Table`, or a `pandas.DataFrame` for
                    a batch Arrow cannot hold): `_partition` and every rule column the chunk
                    has, tombstones already removed. The worker prepares them (`prepare_batch`),
                    validates the row rules (in pieces of ROW_PIECE_ROWS) and keeps the
                    whole-batch columns.
  ("finish",)       no more chunks: validate what was kept for the whole batch and answer.

worker → gate (`Connection.send`, pickled by multiprocessing):
  ("done", None)    one per "rows", once the chunk is prepared and its row rules validated
                    (or its rows queued for the next piece), before its whole-batch columns
                    are kept. The gate leaves at most IN_FLIGHT chunks unanswered: it waits
                    for a "done" before sending more.
  ("result", (counts, success, busy_s, busy_by, worker_mb))
                    the answer to "finish": GX's `unexpected_count` per rule id over the whole
                    batch, whether every expectation succeeded, seconds spent validating (in
                    total and per rule group) and the worker's memory growth in MB. The worker
                    then exits.
  ("error", exception_name, text)
                    instead of any answer, on any failure; the worker then exits. The gate
                    raises GateDisagreement for "GateDisagreement" (GX could not evaluate a
                    rule), GxWorkerError otherwise.

A worker that ends without an answer (killed, out of memory) closes the pipe: the gate raises
GxWorkerError with its exit code. The gate terminates the worker when it is done with it or
abandons the run (`GxCounts.abandon`), and removes the spill directory.

In thread mode there is no channel: the same `GxTally.take` runs in one background thread
and `GxTally.finish_whole` in the caller, with the same results.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from trueup.connectors.errors import SyncError

from .batch import PARTITION, prepare_batch
from .contracts.rules import Contract, Rule
from .rule_kinds import Scope, kind_of, rules_of_scope

# GX's uniqueness check needs ~300 bytes per row (1.4 GB at 5M rows), so it is validated in
# buckets of at most this many rows, split by a hash of the value: copies share a bucket, and
# the bucket counts add up to the batch's count exactly
UNIQUE_BUCKET_ROWS = 250_000
# reference rules over the whole batch go to GX in equal slices of at most this many rows (a
# reference's value set made each validation cost ~0.35 s per rule until
# gx_suites.configurations_once_per_validation; slices still take far fewer validations than
# pieces: 5M rows, 2 rules, 0.8 s in 1M-row slices against 3.4 s per 250k-row piece). Equal
# slices fill up with the batch's last chunk, so the last one is not left for the end
WHOLE_SLICE_ROWS = 1_000_000
# row rules go to GX in pieces of at least this many rows (two 125k-row chunks): a validation
# costs ~0.06 s whatever its size (row rules: 0.15 s at 125k rows, 0.22 s at 250k), so pieces
# of two chunks cut GX's time by ~0.3 s per 1M rows for ~+50 MB in the worker (measured)
ROW_PIECE_ROWS = 250_000
# chunks a worker process may have been handed and not yet validated (one being validated, one
# waiting in the pipe): the caller never waits for GX's rhythm, memory grows by one chunk
IN_FLIGHT = 2
WORKER_ENV = "TRUEUP_GX_WORKER"
#: below this many rows GX runs in a thread by default: forking the step's process (Dagster, dbt
#: and GX loaded, hundreds of MB) cost more than GX's time on the other core saves. A small night's
#: eleven gate runs: 7.1 s in worker processes, 6.3 s in threads (bench night, alternating runs in
#: one process); `bench gate` alone: the same at 2k–100k rows, the process ahead from ~300k
SMALL_BATCH_ROWS = 100_000


class GateDisagreement(SyncError):
    """Our row-level evaluation and GX disagree: a bug, never something to quarantine around."""

    error_class = "permanent"


class GxWorkerError(SyncError):
    """The GX worker failed for a reason other than a rule GX could not evaluate."""

    error_class = "permanent"


def whole_batch_rules(contract: Contract) -> list[Rule]:
    """Rules GX validates over the whole batch, not piece by piece: uniqueness (Scope.DAY)
    needs every row, and a reference rule is cheaper in a few large slices than per piece
    (GX's cost per validation is fixed, its value set the same for every row)."""
    return [r for r in contract.rules if kind_of(r).scope is not Scope.ROW]


def whole_batch_columns(contract: Contract) -> list[str]:
    """Columns GX validates over the whole batch at once, besides `_partition`."""
    return list(dict.fromkeys(c for r in whole_batch_rules(contract)
                              for c in (r.column, r.when[0] if r.when else None) if c))


def worker_mode(batch_rows: int | None = None) -> str:
    """Where GX runs for a batch of `batch_rows` rows: TRUEUP_GX_WORKER when set; else in a thread
    for a batch under SMALL_BATCH_ROWS, in a worker process otherwise (or when the size is not
    known)."""
    mode = os.environ.get(WORKER_ENV, "").strip().lower()
    if mode and mode not in ("process", "thread"):
        raise ValueError(f"{WORKER_ENV} must be 'process' or 'thread', not {mode!r}")
    if not mode:
        mode = "thread" if batch_rows is not None and batch_rows < SMALL_BATCH_ROWS else "process"
    if mode == "process" and "fork" not in multiprocessing.get_all_start_methods():
        return "thread"
    return mode


class GxTally:
    """Validates with GX and adds up its unexpected counts per rule (runs in the worker).
    `batch_rows` (the whole batch's) sizes the uniqueness buckets; with `spill_dir`, the keys
    kept for uniqueness wait on disk, not in memory (`_BucketFiles`)."""

    def __init__(self, contract: Contract, references: dict[str, list[str]], validator=None, batch_rows: int = 0,
                 spill_dir: Path | None = None):
        self.contract, self.references, self.validator = contract, references, validator
        self.rules = {r.id: r for r in contract.rules}
        row_rules = rules_of_scope(contract.rules, Scope.ROW)
        self.row_rules = [r.id for r in row_rules]
        self.row_columns = list(dict.fromkeys(c for r in row_rules for c in kind_of(r).gx_columns(r)))
        self.whole_columns = [PARTITION] + whole_batch_columns(contract)
        self.counts = {r.id: 0 for r in contract.rules}
        self.success = True
        self.busy_s = 0.0   # time spent validating (the benchmark reports it)
        self.busy_by: dict[str, float] = {}
        self._suites: dict[tuple[str, ...], object] = {}
        self.reference_rules = rules_of_scope(contract.rules, Scope.REFERENCE)
        self.unique_rules = rules_of_scope(contract.rules, Scope.DAY)
        self._row_parts: list[pd.DataFrame] = []
        self._row_rows = 0
        self._ref_parts: list[pd.DataFrame] = []
        slices = max(1, -(-batch_rows // WHOLE_SLICE_ROWS))
        self._slice_rows = -(-batch_rows // slices) if batch_rows else WHOLE_SLICE_ROWS
        self._ref_rows = 0
        # uniqueness: per rule, per hash bucket of its value, the key columns of every chunk
        self._buckets = max(1, -(-batch_rows // UNIQUE_BUCKET_ROWS))
        self._unique_parts: dict[str, list[list[pd.DataFrame]]] = {}
        self._spilled = _BucketFiles(spill_dir) if spill_dir is not None and self._buckets > 1 else None

    def take(self, rows: pa.Table | pd.DataFrame, answer=None) -> None:
        """One chunk's live rows, raw: prepared here as for the gate's own evaluation
        (`prepare_batch`), its row rules validated (in pieces of ROW_PIECE_ROWS), then `answer()`
        (the chunk is done with, the caller may send the next) and its whole-batch columns kept."""
        from trueup.connectors.warehouse import arrow_to_pandas

        batch = prepare_batch(self.contract, arrow_to_pandas(rows) if isinstance(rows, pa.Table) else rows)
        if len(batch) and self.row_rules:
            self._row_parts.append(batch[self.row_columns])
            self._row_rows += len(batch)
            if self._row_rows >= ROW_PIECE_ROWS:
                self._validate_rows()
        whole = batch[self.whole_columns]
        del batch
        if answer is not None:
            answer()
        self.collect(whole)

    def _validate_rows(self) -> None:
        if self._row_parts:
            piece = pd.concat(self._row_parts, ignore_index=True) if len(self._row_parts) > 1 else self._row_parts[0]
            self._row_parts, self._row_rows = [], 0
            self.validate(self.row_rules, piece)

    def validate(self, rule_ids: list[str], frame: pd.DataFrame, references: dict | None = None) -> None:
        started = time.perf_counter()
        try:
            self._validate(rule_ids, frame, references)
        finally:
            spent = time.perf_counter() - started
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
        cols = _present(frame, rules)
        result = self.validator.validate(suite, frame[cols])
        self.success = self.success and bool(result.success)
        for r in result.results:
            rule_id = r.expectation_config.meta["rule"]
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise GateDisagreement(f"{self.contract.name}: GX could not evaluate {rule_id}: "
                                       f"{r.exception_info.get('exception_message')}")
            self.counts[rule_id] += int(r.result.get("unexpected_count") or 0)

    def collect(self, frame: pd.DataFrame) -> None:
        """Keep a chunk's whole-batch columns (its live, prepared rows): reference rules are
        validated per `_slice_rows` rows as they fill up, each slice with only the reference
        keys it uses (GX pays per value of the set, per validation; membership is the same);
        uniqueness waits for the whole batch (`finish_whole`)."""
        if frame.empty:
            return
        if self.reference_rules:
            self._ref_parts.append(frame[_present(frame, self.reference_rules)])
            self._ref_rows += len(frame)
            if self._ref_rows >= self._slice_rows:
                self._validate_references()
        for rule in self.unique_rules:
            part = frame[_present(frame, [rule])]
            if self._spilled is not None:
                self._spilled.file(rule.id, part, _value_buckets(part[rule.column], self._buckets))
                continue
            # one dtype for the day across chunks (each chunk's categories differ)
            part = part.assign(**{PARTITION: part[PARTITION].astype("str")})
            parts = self._unique_parts.setdefault(rule.id, [[] for _ in range(self._buckets)])
            if self._buckets == 1:
                parts[0].append(part)
                continue
            # bucketed as it comes, so the end needs no copy of the whole column
            bucket = _value_buckets(part[rule.column], self._buckets)
            for b in np.unique(bucket):
                parts[b].append(part[bucket == b])

    def finish_whole(self) -> None:
        """The rest of the whole-batch validations: the last reference slice, then uniqueness in
        hash buckets of UNIQUE_BUCKET_ROWS (copies share a bucket, so the counts add up exactly;
        GX's check needs ~300 bytes per row, 1.4 GB at 5M rows in one piece)."""
        self._validate_rows()
        self._validate_references()
        if self._spilled is not None:
            for rule_id, frame in self._spilled.read_back():
                self.validate([rule_id], frame)
                del frame
        for rule_id, buckets in self._unique_parts.items():
            for b, parts in enumerate(buckets):
                if parts:
                    frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
                    buckets[b] = []
                    self.validate([rule_id], frame)
                    del frame
        self._unique_parts = {}

    def _validate_references(self) -> None:
        if not self._ref_parts:
            return
        piece = pd.concat(self._ref_parts, ignore_index=True) if len(self._ref_parts) > 1 else self._ref_parts[0]
        self._ref_parts, self._ref_rows = [], 0
        for rule in self.reference_rules:
            reference = pd.Series(self.references.get(rule.reference, []), dtype="str")
            used = pd.Series(piece[rule.column].dropna().unique(), dtype="str")
            self.validate([rule.id], piece, {rule.reference: used[used.isin(reference)].tolist()})


class _BucketFiles:
    """The (day, value) columns uniqueness needs, filed per rule and hash bucket in Arrow IPC
    files as chunks come, and read back one bucket at a time. Kept in memory, they were the
    worker's growth at 5M rows (+~300 MB, by the worker's RSS per chunk). The day is stored as
    a small code (one string per row cost ~90 MB at 5M rows) and comes back as a category."""

    def __init__(self, directory: Path):
        self.directory = directory
        self._days: dict[str, int] = {}
        self._writers: dict[tuple[str, int], pa.ipc.RecordBatchStreamWriter] = {}

    def file(self, rule_id: str, part: pd.DataFrame, bucket: np.ndarray) -> None:
        days = part[PARTITION]
        if not isinstance(days.dtype, pd.CategoricalDtype):
            days = days.astype("category")
        # a chunk holds a day or two: each day's code is looked up once, not once per row
        lookup = np.array([self._days.setdefault(str(d), len(self._days)) for d in days.cat.categories] or [0],
                          dtype=np.int32)
        columns = {PARTITION: pa.array(lookup[days.cat.codes.to_numpy()])}
        for c in part.columns:
            if c != PARTITION:
                columns[c] = pa.array(part[c].astype("str"), from_pandas=True).cast(pa.large_string())
        # sorted by bucket once, then cut: one gather instead of a filter per bucket
        order = np.argsort(bucket, kind="stable")
        table = pa.table(columns).take(pa.array(order))
        ends = np.searchsorted(bucket[order], np.arange(int(bucket.max(initial=-1)) + 2))
        for b in range(len(ends) - 1):
            if ends[b + 1] > ends[b]:
                piece = table.slice(int(ends[b]), int(ends[b + 1] - ends[b]))
                key = (rule_id, b)
                if key not in self._writers:
                    path = self.directory / f"{len(self._writers)}.arrow"
                    self._writers[key] = pa.ipc.new_stream(str(path), piece.schema)
                self._writers[key].write_table(piece)

    def read_back(self):
        """(rule id, frame) per bucket, each file deleted once read."""
        days = list(self._days)
        for i, (key, writer) in enumerate(list(self._writers.items())):
            writer.close()
            path = self.directory / f"{i}.arrow"
            with pa.ipc.open_stream(str(path)) as reader:
                frame = reader.read_all().to_pandas()
            path.unlink()
            del self._writers[key]
            frame[PARTITION] = pd.Categorical.from_codes(frame[PARTITION].to_numpy(), categories=days)
            yield key[0], frame


def _present(frame: pd.DataFrame, rules: list[Rule]) -> list[str]:
    return [c for c in dict.fromkeys(col for r in rules for col in kind_of(r).gx_columns(r)) if c in frame.columns]


def _value_buckets(values: pd.Series, buckets: int) -> np.ndarray:
    """A bucket per row from a hash of its value, so copies share a bucket. DuckDB hashes the
    Arrow strings in place (0.24 s, +120 MB at 5M rows; pandas' factorize or hashing took
    1-2 s and +650 MB to +1.3 GB, going through Python objects)."""
    try:
        table = pa.table({"v": pa.array(values, from_pandas=True)})
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = pa.table({"v": pa.array(values.astype(str), from_pandas=True)})
    con = _hashing_connection()
    con.register("vals", table)
    try:
        return con.execute(f"SELECT hash(v) % {int(buckets)} AS b FROM vals").fetchnumpy()["b"].astype(np.int64)
    finally:
        con.unregister("vals")


_HASHING: dict[tuple[int, int], duckdb.DuckDBPyConnection] = {}


def _hashing_connection() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB per process and thread for the hashing (opening one per chunk cost
    more than the hashing); keyed by process id, so a forked worker never uses its parent's,
    and by thread, as a DuckDB connection is not for two threads at once."""
    key = (os.getpid(), threading.get_ident())
    if key not in _HASHING:
        _HASHING[key] = duckdb.connect(":memory:")
    return _HASHING[key]


class GxCounts:
    """GX's counts for one gate run: chunk by chunk (`submit`), then `result()`. At most
    IN_FLIGHT chunks wait for GX, so memory stays bounded."""

    def __init__(self, contract: Contract, references: dict[str, list[str]], validator=None,
                 mode: str | None = None, batch_rows: int = 0, scratch_dir: Path | None = None):
        self.contract = contract
        # the spill directory is made and removed here, so a worker that dies leaves nothing
        self._spill_dir = None
        if scratch_dir is not None and batch_rows > UNIQUE_BUCKET_ROWS:
            Path(scratch_dir).mkdir(parents=True, exist_ok=True)
            self._spill_dir = Path(tempfile.mkdtemp(prefix=f"gx-{contract.object}-", dir=scratch_dir))
        self.tally = GxTally(contract, references, validator, batch_rows, self._spill_dir)
        self.mode = mode or worker_mode(batch_rows)
        self.counts = self.tally.counts
        self.success = True
        self.busy_s = 0.0
        self.busy_by: dict[str, float] = {}
        self.worker_peak_mb = 0.0    # a process worker's own growth above what it inherited
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gx")
        self._pending: list[Future] = []
        self._proc = None
        self._conn = None
        self._in_flight = 0

    # -- feeding ---------------------------------------------------------------------------
    def submit(self, rows: pa.Table | pd.DataFrame) -> None:
        """One chunk's live rows, raw (the rule columns and `_partition`): the worker prepares
        them (`GxTally.take`), on its own core, while the caller evaluates the same rows."""
        if not len(rows):
            return
        if self.mode == "process" and (self._proc is not None or self._start_process()):
            # a worker process takes the next chunk while it validates this one, so neither side
            # waits on the other's rhythm: at most IN_FLIGHT chunks handed over and not yet validated
            while self._in_flight >= IN_FLIGHT:
                self._receive()
            self._pending.append(self._pool.submit(self._send, ("rows", rows)))
            self._in_flight += 1
        else:
            # GX validates one chunk while the caller splits and writes the next: two chunks alive at most
            self.drain()
            self._pending.append(self._pool.submit(self.tally.take, rows))

    def drain(self) -> None:
        """Wait until every chunk handed over is validated (in process mode, whole-batch pieces
        may still be going on)."""
        while self._pending:
            self._pending.pop(0).result()
        while self._in_flight:
            self._receive()

    def result(self) -> tuple[dict[str, int], bool]:
        try:
            self.drain()
            if self._proc is None:
                self.tally.finish_whole()
            else:
                self._send(("finish",))
                counts, success, busy_s, busy_by, peak = self._receive()
                self.counts, self.success, self.busy_s, self.busy_by = counts, success, busy_s, busy_by
                self.worker_peak_mb = peak
            if self._proc is None:
                t = self.tally
                self.counts, self.success, self.busy_s, self.busy_by = t.counts, t.success, t.busy_s, t.busy_by
        finally:
            self.abandon()
        return self.counts, self.success

    def abandon(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()   # first: a sender blocked on a busy worker's pipe then returns
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()
        self._in_flight = 0
        if self._proc is not None:
            self._proc.join(10)
            self._conn.close()
            self._proc = None
        if self._spill_dir is not None:
            shutil.rmtree(self._spill_dir, ignore_errors=True)

    # -- process mode -----------------------------------------------------------------------
    def _start_process(self) -> bool:
        """Fork the worker; False (and thread mode from now on) where a process cannot start,
        e.g. inside a daemonic process, which may not have children."""
        from . import gx_suites  # noqa: F401 - loaded once, here, and inherited by the fork

        ctx = multiprocessing.get_context("fork")
        self._conn, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, self.tally), name=f"gx-{self.contract.name}", daemon=True)
        try:
            proc.start()
        except (AssertionError, OSError):
            self._conn.close()
            child.close()
            self.mode = "thread"
            return False
        self._proc = proc
        child.close()
        return True

    def _send(self, message: tuple) -> None:
        """Pickle and write one message (the sender thread: the write blocks while the worker is busy)."""
        try:
            self._conn.send_bytes(pickle.dumps(message, protocol=5))
        except OSError:
            pass   # the worker has ended: `_receive` reads its error, or finds it gone

    def _receive(self):
        """The worker's next answer, in order; its error raised here."""
        try:
            kind, *payload = self._conn.recv()
        except (EOFError, OSError):
            self._proc.join(5)
            raise GxWorkerError(f"{self.contract.name}: the GX worker process ended without an answer "
                                f"(exit code {self._proc.exitcode}; out of memory?)") from None
        if kind == "error":
            raise _worker_error(*payload)
        if kind == "done":
            self._in_flight -= 1
        return payload[0]


def _worker_error(name: str, text: str) -> Exception:
    return (GateDisagreement if name == "GateDisagreement" else GxWorkerError)(text)


def _serve(conn, tally: GxTally) -> None:
    """The worker process: validates each chunk's row rules as it comes (answering "done" at
    once), keeps its whole-batch columns, and on "finish" validates those and answers the totals."""
    start_mb = _status_mb("VmRSS")
    try:
        while True:
            kind, *args = pickle.loads(conn.recv_bytes())
            if kind == "rows":
                tally.take(args[0], answer=lambda: conn.send(("done", None)))
            elif kind == "finish":
                tally.finish_whole()
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
