"""The gate: validate one batch against its contract, find every failing row, prove that
our row-level split agrees with Great Expectations, and split passed from quarantined.

No Dagster and no warehouse here: `evaluate_batch` is a pure function of (contract, rows,
reference key sets), so it can be tested and benchmarked on its own.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from connectors.errors import SyncError

from .batch import PARTITION, ROW, num_column, prepare_batch
from .contracts.rules import Contract
from .evaluate import failing_rows

GX_CHUNK_ROWS = 1_000_000   # bounds GX's memory (it copies and hashes what it validates); ~1 s fixed cost per chunk


class GateDisagreement(SyncError):
    """Our row-level evaluation and GX disagree: a bug, never something to quarantine around."""

    error_class = "permanent"


class ConservationError(SyncError):
    error_class = "permanent"


@dataclass
class GateOutcome:
    contract: Contract
    rows_in: int
    passed: pd.DataFrame            # rows that satisfy every rule (without helper columns)
    quarantined: pd.DataFrame       # failing rows, with `failed_expectations` (list of rule ids)
    unexpected_counts: dict[str, int]   # per rule, from GX
    gx_success: bool
    blocked: bool
    block_reason: str | None
    money_in: float = 0.0
    money_passed: float = 0.0
    money_quarantined: float = 0.0
    evaluated_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).replace(tzinfo=None))

    @property
    def rows_passed(self) -> int:
        return len(self.passed)

    @property
    def rows_quarantined(self) -> int:
        return len(self.quarantined)

    @property
    def failing_share(self) -> float:
        return self.rows_quarantined / self.rows_in if self.rows_in else 0.0

    def top_failures(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(((k, v) for k, v in self.unexpected_counts.items() if v), key=lambda kv: -kv[1])[:n]


def gx_unexpected_counts(contract: Contract, batch: pd.DataFrame, references: dict[str, list[str]],
                         validator=None, chunk_rows: int = GX_CHUNK_ROWS) -> tuple[dict[str, int], bool]:
    """GX's own count of failing rows per rule. Row-wise rules run chunk by chunk; uniqueness
    and reference rules run once over the whole batch, on just the columns they read."""
    from .gx_suites import GxValidator, build_suite

    validator = validator or GxValidator()
    counts = {r.id: 0 for r in contract.rules}
    success = True
    # uniqueness needs the whole batch; reference checks carry large value sets whose cost GX pays
    # per validation (it re-serialises each expectation's configuration, ~0.1 ms per value), so
    # both run once, on just their columns; the other rules run chunk by chunk
    set_rules = [r for r in contract.rules if r.kind in ("unique", "in_reference")]
    row_rules = [r for r in contract.rules if r.kind not in ("unique", "in_reference")]

    def run(rules, frame):
        nonlocal success
        if not rules or frame.empty:
            return
        result = validator.validate(build_suite(contract, references, rules), frame)
        success = success and bool(result.success)
        for r in result.results:
            rule_id = r.expectation_config.meta["rule"]
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise GateDisagreement(f"{contract.name}: GX could not evaluate {rule_id}: "
                                       f"{r.exception_info.get('exception_message')}")
            counts[rule_id] += int(r.result.get("unexpected_count") or 0)

    # GX copies and hashes the frame it is given: give it only the columns the rules read
    row_cols = [c for c in dict.fromkeys(col for r in row_rules for col in _rule_columns(r)) if c in batch.columns]
    row_frame = batch[row_cols] if row_cols else batch
    for start in range(0, len(batch), chunk_rows):
        run(row_rules, row_frame.iloc[start:start + chunk_rows])
    if set_rules:
        cols = [c for c in dict.fromkeys(col for r in set_rules for col in _rule_columns(r)) if c in batch.columns]
        run(set_rules, batch[cols])
    return counts, success


def _rule_columns(rule) -> list[str]:
    """The columns GX reads for a rule (a range rule reads its numeric shadow)."""
    cols = [num_column(rule.column) if rule.kind == "between" else rule.column]
    if rule.other:
        cols.append(rule.other)
    if rule.when:
        cols.append(rule.when[0])
    if rule.kind == "unique":
        cols.append(PARTITION)
    return cols


def evaluate_batch(contract: Contract, rows: pd.DataFrame, references: dict[str, list[str]],
                   validator=None, tombstone_column: str | None = "archived") -> GateOutcome:
    """Validate one batch (one partition, or rows without a `_partition` column)."""
    outcomes = evaluate_partitions(contract, rows, references, validator, tombstone_column)
    if not outcomes:
        return _outcome(contract, rows.iloc[:0], rows.iloc[:0].assign(failed_expectations=[]), {}, True)
    assert len(outcomes) == 1, "evaluate_batch takes one partition; use evaluate_partitions"
    return next(iter(outcomes.values()))


def evaluate_partitions(contract: Contract, rows: pd.DataFrame, references: dict[str, list[str]],
                        validator=None, tombstone_column: str | None = "archived") -> dict[str, GateOutcome]:
    """Validate the batches of many partitions with one GX validation (uniqueness is scoped to
    each partition), prove agreement with GX, and return one outcome per partition.
    Deletions (tombstones) carry no fields to check and pass straight through."""
    rows = rows.reset_index(drop=True)
    if PARTITION not in rows.columns:
        rows = rows.assign(**{PARTITION: "batch"})
    is_tomb = (rows[tombstone_column].astype(str) == "true").to_numpy() if (
        tombstone_column and tombstone_column in rows.columns) else np.zeros(len(rows), bool)
    live = rows[~is_tomb].reset_index(drop=True)
    batch = prepare_batch(contract, live)

    fails = failing_rows(contract, batch, references)
    counts, gx_success = gx_unexpected_counts(contract, batch, references, validator)
    ours = {r.id: int(fails[r.id].sum()) for r in contract.rules}
    diff = {k: (ours[k], counts[k]) for k in ours if ours[k] != counts[k]}
    if diff:
        detail = ", ".join(f"{k}: ours {a} vs GX {b}" for k, (a, b) in diff.items())
        raise GateDisagreement(f"{contract.name}: row-level evaluation disagrees with GX ({detail})")

    rule_ids = [r.id for r in contract.rules]
    mask = fails[rule_ids].to_numpy()
    bad = mask.any(axis=1)
    # rule ids per failing row (only failing rows: a Python loop over every row costs seconds at 5M)
    bad_idx = np.flatnonzero(bad)
    failed_arr = np.empty(len(bad), dtype=object)
    for i, row in zip(bad_idx, mask[bad_idx]):
        failed_arr[i] = [rule_ids[j] for j in np.flatnonzero(row)]
    failed = pd.Series(failed_arr, dtype=object)
    outcomes = {}
    tombs = rows[is_tomb]
    live_part = live[PARTITION].to_numpy()
    for partition in sorted(set(rows[PARTITION])):
        in_p = live_part == partition
        q = live[in_p & bad].copy()
        q["failed_expectations"] = failed[in_p & bad].tolist()
        passed = pd.concat([live[in_p & ~bad], tombs[tombs[PARTITION] == partition]], ignore_index=True)
        part_counts = {rid: int(mask[in_p, j].sum()) for j, rid in enumerate(rule_ids)}
        outcomes[partition] = _outcome(contract, passed, q.reset_index(drop=True), part_counts, gx_success,
                                       rows_in=int(in_p.sum() + (tombs[PARTITION] == partition).sum()))
        _conserve(outcomes[partition], rows[rows[PARTITION] == partition])
    return outcomes


def _outcome(contract, passed, quarantined, counts, gx_success, rows_in=None) -> GateOutcome:
    o = GateOutcome(contract, rows_in if rows_in is not None else len(passed) + len(quarantined), passed,
                    quarantined, counts, gx_success, False, None)
    share = o.failing_share
    if o.rows_in >= contract.min_rows_to_block and share > contract.block_threshold:
        o.blocked = True
        top = ", ".join(f"{k} ({v})" for k, v in o.top_failures(3))
        o.block_reason = (f"{contract.name}: {o.rows_quarantined} of {o.rows_in} rows ({share:.1%}) fail the "
                          f"contract, above the {contract.block_threshold:.0%} threshold — batch blocked, nothing "
                          f"published from it. Top failures: {top}")
    return o


def _money(df: pd.DataFrame, col: str | None) -> float:
    if not col or col not in df.columns or df.empty:
        return 0.0
    return float(pd.to_numeric(df[col], errors="coerce").fillna(0).sum())


def _conserve(o: GateOutcome, rows: pd.DataFrame) -> None:
    """Rows in = passed + quarantined, and the same for money: a gate never loses anything."""
    col = o.contract.money_column
    o.money_in = _money(rows, col)
    o.money_passed = _money(o.passed, col)
    o.money_quarantined = _money(o.quarantined, col)
    if o.rows_in != o.rows_passed + o.rows_quarantined:
        raise ConservationError(f"{o.contract.name}: {o.rows_in} rows in, {o.rows_passed} passed + "
                                f"{o.rows_quarantined} quarantined")
    if abs(o.money_in - o.money_passed - o.money_quarantined) > 0.005 * max(1, len(rows)):
        raise ConservationError(f"{o.contract.name}: money in {o.money_in:.2f} ≠ passed {o.money_passed:.2f} "
                                f"+ quarantined {o.money_quarantined:.2f}")


__all__ = ["evaluate_batch", "evaluate_partitions", "GateOutcome", "GateDisagreement", "ConservationError", "ROW"]
