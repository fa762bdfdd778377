"""The gate: validate a batch against its contract, find every failing row, prove that our
row-level split agrees with Great Expectations, and split passed from quarantined.

A batch is fed to a `GateRun` in chunks, so memory is bounded by the chunk, not the batch:
every failing row is found with set-based SQL (in-process DuckDB, quality/evaluate.py) while GX
validates the same chunk in a worker (quality/gx_worker.py: a forked process, or a thread) —
GX's work overlaps the split and the writes instead of adding to them. Each side prepares the
raw rows itself (SQL here, `prepare_batch` in pandas for GX), so the work is shared between the
two cores and the agreement proof covers the preparation too. Uniqueness needs the whole batch,
so its duplicated values are found up front. When the batch is finished, GX's counts must equal
ours rule for rule, and rows and money must balance.

No Dagster and no warehouse here: `evaluate_partitions` is a pure function of (contract, rows,
reference key sets), so it can be tested and benchmarked on its own.
"""
from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from trueup.connectors.errors import SyncError
from trueup.connectors.warehouse import arrow_to_pandas

from .batch import PARTITION, ROW, blank_to_null, money_values, prepare_batch
from .contracts.rules import Contract, Rule
from .evaluate import ChunkEvaluator, is_text
from .gx_worker import (
    UNIQUE_BUCKET_ROWS,
    GateDisagreement,
    GxCounts,
    whole_batch_columns,
)
from .rule_kinds import Scope, rules_of_scope

# rows per chunk: bounds the memory of the split and of GX (which copies what it validates).
# Measured at 5M rows on 2 cores (python -m bench gate, before chunks stayed Arrow): 125k rows
# peak at 932 MB (gate process 733 + GX worker 199) in 26.2 s; 180k at 1,050 MB in 25.4 s; 250k
# at 1,150-1,190 MB in 23-24 s. Today 125k peaks at 930-965 MB (GX's worker takes two chunks
# per validation, quality/gx_worker.ROW_PIECE_ROWS)
CHUNK_ROWS = 125_000
SAMPLE_ROWS = 20   # quarantined rows kept per partition for the gate report


class ConservationError(SyncError):
    error_class = "permanent"


@dataclass
class GateOutcome:
    contract: Contract
    rows_in: int
    rows_passed: int
    rows_quarantined: int
    unexpected_counts: dict[str, int]   # per rule (ours, proven equal to GX's over the batch)
    gx_success: bool
    blocked: bool = False
    block_reason: str | None = None
    money_in: float = 0.0
    money_passed: float = 0.0
    money_quarantined: float = 0.0
    sample: pd.DataFrame | None = None   # the first quarantined rows, with `failed_expectations`
    gx_seconds: float = 0.0              # GX's validation time for the whole batch (all partitions)
    gx_worker_mb: float = 0.0            # a GX worker process's memory growth above what it inherited
    phase_seconds: dict[str, float] = field(default_factory=dict)   # of the gate run (run_gate.py)
    # the split itself, kept only by `evaluate_partitions` (in-memory batches: replay, outbound)
    passed: pd.DataFrame | None = None
    quarantined: pd.DataFrame | None = None
    evaluated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))
    # the GX Data Docs page of this result, once kept (quality/data_docs.py)
    data_docs_url: str | None = None

    @property
    def failing_share(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    def top_failures(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(((k, v) for k, v in self.unexpected_counts.items() if v), key=lambda kv: -kv[1])[:n]


@dataclass
class _Tally:
    rows_in: int = 0
    rows_passed: int = 0
    rows_quarantined: int = 0
    money_in: float = 0.0
    money_passed: float = 0.0
    money_quarantined: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    samples: list[pd.DataFrame] = field(default_factory=list)


class GateRun:
    """One validation of a contract's batch (one or many partitions), fed chunk by chunk.

    `expected_rows` (rows read per partition) and `duplicates` (per uniqueness rule, the
    (partition, value) pairs found more than once among the batch's live rows) describe the
    whole batch: `batch_facts` finds them in memory, the streamed gate in the warehouse.
    `feed` returns each chunk's (passed, quarantined) rows; `finish` proves agreement with GX
    and conservation, and returns one outcome per partition. Deletions (tombstones) carry no
    fields to check and pass straight through."""

    def __init__(self, contract: Contract, references: dict[str, list[str]], expected_rows: dict[str, int],
                 duplicates: dict[str, pd.DataFrame], validator=None, tombstone_column: str | None = "archived",
                 gx_mode: str | None = None, scratch_dir=None):
        self.contract = contract
        self.tombstone_column = tombstone_column
        self.rule_ids = [r.id for r in contract.rules]
        self.gx = GxCounts(contract, references, validator, gx_mode, batch_rows=sum(expected_rows.values()),
                           scratch_dir=scratch_dir)
        self.tallies: dict[str, _Tally] = {}
        self.expected_rows = expected_rows
        # what GX's worker needs of each chunk's rows, raw: every rule column and the day
        self.gx_input = list(dict.fromkeys([PARTITION, *contract.rule_columns]))
        self.evaluator = ChunkEvaluator(contract, references, duplicates, self.duckdb_threads)

    @property
    def duckdb_threads(self) -> int | None:
        """DuckDB threads for this run's own SQL: one while a GX worker process has the other
        core (measured at 1M rows: 7.2–8.9 s with one thread vs 8.2–11.7 s with two, GX's
        time falling from 5.6–8.1 s to 4.6–5.9 s), DuckDB's default otherwise."""
        return 1 if self.gx.mode == "process" and (os.cpu_count() or 1) <= 2 else None

    def _tombstones(self, rows: pa.Table) -> np.ndarray:
        """Rows whose tombstone column holds the text "true" (a deletion: nothing to check)."""
        col = self.tombstone_column
        if not col or col not in rows.column_names or not is_text(rows.schema.field(col).type):
            return np.zeros(rows.num_rows, bool)   # not text: no value reads as "true" (as `str(True)`)
        return pc.fill_null(pc.equal(rows.column(col), "true"), False).to_numpy(zero_copy_only=False)

    def feed(self, chunk: pa.Table | pd.DataFrame,
             keep_passed: bool = True) -> tuple[pd.DataFrame | None, pd.DataFrame]:
        """Evaluate one chunk — an Arrow table (the warehouse's reader) or a DataFrame (an
        in-memory batch): (passed rows or None, quarantined rows with `failed_expectations`).
        A streamed gate writes passed rows set-based in the warehouse, so it need not keep them.

        The chunk stays Arrow on this side: GX's worker gets its live rows raw and prepares them
        itself, on its own core, while the same rows are prepared and evaluated here in SQL;
        only the failing rows become pandas (for the quarantine)."""
        frame = None
        if isinstance(chunk, pd.DataFrame):
            frame = chunk.reset_index(drop=True)
            if PARTITION not in frame.columns:
                frame = frame.assign(**{PARTITION: "batch"})
            chunk = _arrow_or_none(frame)
            if chunk is None:   # a column mixing Python types, which Arrow cannot hold
                return self._feed_mixed(frame, keep_passed)
        elif PARTITION not in chunk.column_names:
            chunk = chunk.append_column(PARTITION, pa.array(["batch"] * chunk.num_rows, pa.string()))
        table = chunk.append_column(ROW, pa.array(np.arange(chunk.num_rows, dtype=np.int64)))
        is_tomb = self._tombstones(table)
        live = table.filter(pa.array(~is_tomb)) if is_tomb.any() else table
        # GX starts while we find the failing rows
        self.gx.submit(live.select([c for c in self.gx_input if c in live.column_names]))
        fails = self.evaluator.failing_raw(live)
        del live
        bad = fails[ROW].to_numpy()
        quarantined = (frame.iloc[bad].reset_index(drop=True) if frame is not None
                       else arrow_to_pandas(chunk.take(pa.array(bad))))
        self._tally(self.evaluator.totals(chunk), fails, quarantined)
        passed = None
        if keep_passed:
            passes = np.ones(chunk.num_rows, bool)
            passes[bad] = False
            passed = (frame[passes].reset_index(drop=True) if frame is not None
                      else arrow_to_pandas(chunk.filter(pa.array(passes))))
        return passed, quarantined

    def _feed_mixed(self, frame: pd.DataFrame, keep_passed: bool) -> tuple[pd.DataFrame | None, pd.DataFrame]:
        """`feed` for a DataFrame Arrow cannot hold: prepared in pandas, scanned by DuckDB as is."""
        col = self.tombstone_column
        is_tomb = ((frame[col].astype(str) == "true").to_numpy() if col and col in frame.columns
                   else np.zeros(len(frame), bool))
        live_idx = np.flatnonzero(~is_tomb)
        live = frame.iloc[live_idx].reset_index(drop=True) if is_tomb.any() else frame
        self.gx.submit(live[[c for c in self.gx_input if c in live.columns]])
        fails = self.evaluator.failing_prepared(prepare_batch(self.contract, live))
        bad = live_idx[fails[ROW].to_numpy()]
        fails[ROW] = bad
        quarantined = frame.iloc[bad].reset_index(drop=True)
        money = self.contract.money_column
        has_money = bool(money) and money in frame.columns
        amounts = money_values(frame[money]) if has_money else np.zeros(len(frame))
        fails["_money"] = amounts[bad]
        totals = (pd.DataFrame({"p": frame[PARTITION].astype(str).to_numpy(), "money": amounts})
                  .groupby("p", sort=False).agg(n=("money", "size"), money=("money", "sum")).reset_index())
        self._tally(totals, fails, quarantined)
        passes = np.ones(len(frame), bool)
        passes[bad] = False
        return (frame[passes].reset_index(drop=True) if keep_passed else None), quarantined

    def _tally(self, totals: pd.DataFrame, fails: pd.DataFrame, quarantined: pd.DataFrame) -> None:
        """Add a chunk to the per-day tallies: rows and money read (`totals`: p, n, money), and of
        them the failing rows (`fails`, row for row with `quarantined`), per rule. What passed is
        the rest; what reached validated is counted again in the warehouse (run_gate.py)."""
        mask = fails[self.rule_ids].to_numpy(dtype=bool)
        quarantined["failed_expectations"] = pd.Series(_failed_rule_lists(mask, self.rule_ids), dtype=object)
        for p, n, money in totals.itertuples(index=False, name=None):
            t = self.tallies.setdefault(p, _Tally(counts={r: 0 for r in self.rule_ids}))
            t.rows_in += int(n)
            t.rows_passed += int(n)
            t.money_in += float(money)
            t.money_passed += float(money)
        days = fails[PARTITION].astype(str).to_numpy()
        for p in pd.unique(days):
            mine = days == p
            t = self.tallies[p]
            q = int(mine.sum())
            m = float(fails["_money"].to_numpy()[mine].sum())
            t.rows_quarantined += q
            t.rows_passed -= q
            t.money_quarantined += m
            t.money_passed -= m
            for rid, k in zip(self.rule_ids, mask[mine].sum(axis=0)):
                t.counts[rid] += int(k)
            if sum(len(s) for s in t.samples) < SAMPLE_ROWS:
                t.samples.append(quarantined[mine].head(SAMPLE_ROWS))

    def abandon(self) -> None:
        self.gx.abandon()
        self.evaluator.close()

    def finish(self) -> dict[str, GateOutcome]:
        c = self.contract
        self.evaluator.close()
        gx_counts, gx_success = self.gx.result()
        ours = {rid: sum(t.counts[rid] for t in self.tallies.values()) for rid in self.rule_ids}
        diff = {k: (ours[k], gx_counts[k]) for k in ours if ours[k] != gx_counts[k]}
        if diff:
            detail = ", ".join(f"{k}: ours {a} vs GX {b}" for k, (a, b) in diff.items())
            raise GateDisagreement(f"{c.name}: row-level evaluation disagrees with GX ({detail})")
        outcomes = {}
        for p in sorted(set(self.tallies) | set(self.expected_rows)):
            t = self.tallies.get(p, _Tally(counts={r: 0 for r in self.rule_ids}))
            o = GateOutcome(c, t.rows_in, t.rows_passed, t.rows_quarantined, t.counts, gx_success,
                            money_in=t.money_in, money_passed=t.money_passed, money_quarantined=t.money_quarantined,
                            sample=pd.concat(t.samples, ignore_index=True).head(SAMPLE_ROWS) if t.samples else None)
            o.gx_seconds, o.gx_worker_mb = self.gx.busy_s, self.gx.worker_peak_mb
            _conserve(o, self.expected_rows.get(p, 0))
            _apply_block_policy(o)
            outcomes[p] = o
        return outcomes


def _arrow_or_none(frame: pd.DataFrame) -> pa.Table | None:
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None


def batch_facts(contract: Contract, rows: pd.DataFrame,
                tombstone_column: str | None = "archived") -> tuple[dict[str, int], dict[str, pd.DataFrame]]:
    """What a GateRun must know of an in-memory batch as a whole: rows per partition, and the
    duplicated (partition, value) pairs of each uniqueness rule among its live rows."""
    rows = rows if PARTITION in rows.columns else rows.assign(**{PARTITION: "batch"})
    expected = {k: int(v) for k, v in rows[PARTITION].value_counts().items()}
    if tombstone_column and tombstone_column in rows.columns:
        rows = rows[(rows[tombstone_column].astype(str) != "true").to_numpy()]
    cols = [PARTITION] + whole_batch_columns(contract)
    frame = rows[[c for c in cols if c in rows.columns]].reset_index(drop=True)
    for c in cols:
        frame[c] = blank_to_null(frame[c]) if c in frame.columns else pd.Series(None, index=frame.index, dtype="str")
    return expected, _duplicates(rules_of_scope(contract.rules, Scope.DAY), frame)


def _failed_rule_lists(mask: np.ndarray, rule_ids: list[str]) -> list[list[str]]:
    """The failed rule ids of each failing row. Failing rows share a handful of patterns (most
    break one rule), so each distinct pattern's list is built once and shared."""
    if not len(mask):
        return []
    patterns, which = np.unique(mask, axis=0, return_inverse=True)
    lists = [[rule_ids[j] for j in np.flatnonzero(p)] for p in patterns]
    return [lists[i] for i in which.reshape(-1)]


def _duplicates(rules: list[Rule], frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per uniqueness rule, the (partition, value) pairs that occur more than once."""
    out: dict[str, pd.DataFrame] = {}
    if not rules:
        return out
    con = duckdb.connect(":memory:")
    try:
        try:   # as Arrow: no detour through Python objects (hundreds of MB at 5M rows)
            con.register("whole", pa.Table.from_pandas(frame, preserve_index=False))
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            con.register("whole", frame)
        # in hash buckets, like GX's check: one hash table for 5M keys held ~400 MB
        buckets = max(1, -(-len(frame) // UNIQUE_BUCKET_ROWS))
        for r in rules:
            c = '"' + r.column.replace('"', '""') + '"'
            where = f"{c} IS NOT NULL"
            if r.when:
                col, value = r.when
                where += f" AND \"{col}\" = '{value}'"
            parts = [con.execute(f'SELECT "{PARTITION}"::VARCHAR AS p, {c} AS v FROM whole WHERE {where} '
                                 f"AND hash({c}) % {buckets} = {b} GROUP BY 1, 2 HAVING count(*) > 1").df()
                     for b in range(buckets)]
            out[r.id] = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    finally:
        con.close()
    return out


def _apply_block_policy(o: GateOutcome) -> None:
    c = o.contract
    share = o.failing_share
    if o.rows_in >= c.min_rows_to_block and share > c.block_threshold:
        o.blocked = True
        top = ", ".join(f"{k} ({v})" for k, v in o.top_failures(3))
        o.block_reason = (f"{c.name}: {o.rows_quarantined} of {o.rows_in} rows ({share:.1%}) fail the "
                          f"contract, above the {c.block_threshold:.0%} threshold — batch blocked, nothing "
                          f"published from it. Top failures: {top}")


def _conserve(o: GateOutcome, rows_read: int) -> None:
    """Rows in = passed + quarantined, and the same for money: a gate never loses anything."""
    name = o.contract.name
    if o.rows_in != rows_read:
        raise ConservationError(f"{name}: {rows_read} rows read for the batch but {o.rows_in} evaluated")
    if o.rows_in != o.rows_passed + o.rows_quarantined:
        raise ConservationError(f"{name}: {o.rows_in} rows in, {o.rows_passed} passed + "
                                f"{o.rows_quarantined} quarantined")
    if abs(o.money_in - o.money_passed - o.money_quarantined) > 0.005 * max(1, o.rows_in):
        raise ConservationError(f"{name}: money in {o.money_in:.2f} ≠ passed {o.money_passed:.2f} "
                                f"+ quarantined {o.money_quarantined:.2f}")


# -- in-memory batches ---------------------------------------------------------------------
def evaluate_partitions(contract: Contract, rows: pd.DataFrame, references: dict[str, list[str]],
                        validator=None, tombstone_column: str | None = "archived") -> dict[str, GateOutcome]:
    """Validate an in-memory batch of one or many partitions (uniqueness is scoped to each
    partition) and return one outcome per partition, with its passed and quarantined rows."""
    rows = rows.reset_index(drop=True)
    # a day is text, as the gate's SQL tallies it (a date object would not match its own tally)
    rows = rows.assign(**{PARTITION: rows[PARTITION].astype(str) if PARTITION in rows.columns else "batch"})
    # a small in-memory batch: GX in a thread (a fork would cost more than it saves)
    expected, duplicates = batch_facts(contract, rows, tombstone_column)
    run = GateRun(contract, references, expected, duplicates, validator, tombstone_column, gx_mode="thread")
    try:
        passed, quarantined = run.feed(rows) if len(rows) else (rows, rows.assign(failed_expectations=[]))
        outcomes = run.finish()
    except BaseException:
        run.abandon()
        raise
    for p, o in outcomes.items():
        o.passed = passed[passed[PARTITION] == p].reset_index(drop=True)
        o.quarantined = quarantined[quarantined[PARTITION] == p].reset_index(drop=True)
    return outcomes


def evaluate_batch(contract: Contract, rows: pd.DataFrame, references: dict[str, list[str]],
                   validator=None, tombstone_column: str | None = "archived") -> GateOutcome:
    """Validate one batch (one partition, or rows without a `_partition` column)."""
    outcomes = evaluate_partitions(contract, rows, references, validator, tombstone_column)
    if not outcomes:
        empty = rows.iloc[:0]
        return GateOutcome(contract, 0, 0, 0, {r.id: 0 for r in contract.rules}, True, passed=empty,
                           quarantined=empty.assign(failed_expectations=[]))
    assert len(outcomes) == 1, "evaluate_batch takes one partition; use evaluate_partitions"
    return next(iter(outcomes.values()))


__all__ = ["evaluate_batch", "evaluate_partitions", "GateRun", "GateOutcome", "GateDisagreement",
           "ConservationError", "CHUNK_ROWS", "ROW"]
