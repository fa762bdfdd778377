"""The bookkeeping every Trueup step does around its work, in one place.

Each asset (and each op of the intraday job) that moves data records one `ops.sync_runs` row per
(asset, partition) whatever happens, and turns a failure into what Dagster should do with it:
a transient error is raised again for the step's retry policy (`RETRY`), a permanent one becomes a
`Failure` that is not retried and says why in one line.

    with recorded_run(wh, [step_facts(context, "raw/crm_deals", p) for p in partitions]) as run:
        result = do_the_work()
        run.facts[0].rows_written = result.rows
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from dagster import Backoff, Failure, Jitter, RetryPolicy

from trueup.assets.run_facts import RunFacts, write_sync_runs
from trueup.connectors.errors import classify
from trueup.connectors.warehouse import Warehouse

#: transient failures (timeouts, 429, 5xx, locks) are retried by Dagster with backoff
RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def step_facts(context, asset: str, partition: str) -> RunFacts:
    """Empty facts of one (asset, partition) of the running step (asset or op context)."""
    return RunFacts(run_id=context.run.run_id, asset=asset, partition=partition,
                    attempt=context.retry_number + 1, correlation_id=context.run.tags.get("trueup/correlation_id"))


def fail_fast(exc: BaseException) -> None:
    """Permanent errors must not be retried: turn them into a Failure that says why."""
    if classify(exc) != "transient":
        raise Failure(description=str(exc), allow_retries=False) from exc


@dataclass
class RecordedRun:
    """What the body of `recorded_run` fills in: the facts of its partitions, and the partitions it
    rejected on their own (each recorded failed with its reason while the others go on)."""

    facts: list[RunFacts]
    rejected: list[tuple[RunFacts, BaseException]] = field(default_factory=list)
    record_success: bool = True     # False: a dry run records nothing when it succeeds

    def reject(self, facts: RunFacts, error: BaseException) -> None:
        if facts in self.facts:
            self.facts.remove(facts)
        self.rejected.append((facts, error))


@contextlib.contextmanager
def recorded_run(wh: Warehouse, facts: Iterable[RunFacts]) -> Iterator[RecordedRun]:
    """Run the body; record its facts in ops.sync_runs — failed with the error if it raised (then
    re-raise for the retry policy, or as a non-retried Failure if the error is permanent).
    The warehouse is held open in this process for the step (Warehouse.held_open)."""
    run = RecordedRun(list(facts))
    with wh.held_open():
        try:
            yield run
        except Exception as exc:
            write_sync_runs(wh, run.facts, exc)
            fail_fast(exc)
            raise
        for f, error in run.rejected:
            write_sync_runs(wh, [f], error)
        if run.record_success:
            write_sync_runs(wh, run.facts)
