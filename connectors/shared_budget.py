"""One CRM rate budget for every process that uses the same CRM token: runs in their own processes,
steps on multiprocess or Celery workers, the intraday run beside a night.

Each client's :class:`~connectors.throttle.Throttle` paces its own process under the portal's
limits; that is not enough once several processes call the CRM at once (four processes at the
limit each make four times the limit, and the CRM answers 429s). So before each request the
throttle also takes a slot from a budget shared by all of them: a rolling window of recent
sends per limit (``requests``: N per ten seconds; ``searches``: a few per second), taken under a
lock that spans processes —

* :class:`FileBudget`: a file under the Trueup home locked with ``flock`` (processes on one
  machine: the DuckDB deployment, or the multiprocess executor);
* :class:`PostgresBudget`: a table in the PostgreSQL warehouse under a transaction-scoped advisory
  lock, stamped with the database's clock (processes on any machine: the Celery executor).

A budget is keyed by the CRM's URL and token (hashed), so two portals never share one. Sends are
counted in buckets of a hundredth of the window (constant state however high the limit; a send
counts until its whole bucket has left the window, so the budget errs by at most 1 % on the safe
side). A slot is stamped when it is taken; the throttle's headroom absorbs the latency between that
stamp and the moment the CRM counts the request (95 % of the ten-second limit; searches: the
per-second limit over a window 1/0.95 s long). Dagster's concurrency pools limit how many
steps run at once, not how many requests per second they make, so the budget is kept here."""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa


class SharedBudget(Protocol):
    def take(self, name: str, limit: int, interval_s: float) -> float:
        """Take a slot of `name` (at most `limit` in any `interval_s`): 0.0 if taken, else the
        seconds until one frees (nothing taken; ask again then)."""


def budget_key(base_url: str, token: str) -> str:
    return hashlib.sha256(f"{base_url.rstrip('/')}\n{token}".encode()).hexdigest()[:16]


BUCKETS = 100   # per window


def _decide(counts: dict[int, int], now: float, limit: int, interval_s: float) -> tuple[dict[int, int], float]:
    """Sends per bucket still in the window (one more in `now`'s bucket if a slot is free), and
    the wait: 0.0 if taken, else the seconds until enough old buckets have left the window."""
    width = interval_s / BUCKETS
    current = int(now // width)
    # a send is forgotten once its whole bucket is a window old: never before, at most a bucket after
    recent = {b: n for b, n in counts.items() if b >= current - BUCKETS}
    if sum(recent.values()) < limit:
        recent[current] = recent.get(current, 0) + 1
        return recent, 0.0
    excess, wait = sum(recent.values()) - limit + 1, 0.0
    for b in sorted(recent):   # the oldest buckets leave first
        excess -= recent[b]
        wait = (b + BUCKETS + 1) * width - now + 1e-6   # (a hair past the edge, whatever the rounding)
        if excess <= 0:
            break
    return recent, max(wait, 0.001)


class FileBudget:
    """The budget in ``<folder>/crm-budget-<key>.json`` (private to the user), for one machine."""

    def __init__(self, folder: Path, key: str, clock=time.time):
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = folder / f"crm-budget-{key}.json"
        self._clock = clock

    def take(self, name: str, limit: int, interval_s: float) -> float:
        def decide(state: dict) -> float:
            counts = {int(b): n for b, n in state.get(name, {}).items()}
            state[name], wait = _decide(counts, self._clock(), limit, interval_s)
            return wait
        return self._locked(decide)

    def _locked(self, decide) -> float:
        """`decide(state)` on the file's state under its lock, the state written back."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        with os.fdopen(fd, "r+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                raw = fh.read()
                state = json.loads(raw) if raw.strip() else {}
                wait = decide(state)
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(state))
                fh.flush()
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return wait


class PostgresBudget:
    """The budget in the warehouse's ``ops.crm_budget``, for processes on any machine."""

    def __init__(self, engine: sa.Engine, key: str):
        self.engine, self.key = engine, key
        from trueup.connectors.warehouse_schema import CRM_BUDGET_GROUP, ensure_in

        with engine.begin() as conn:   # (processes starting together take turns: ensure's DDL lock)
            ensure_in(conn, CRM_BUDGET_GROUP)

    def take(self, name: str, limit: int, interval_s: float) -> float:
        with self.engine.begin() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"crm-budget:{self.key}:{name}"})
            now = conn.execute(sa.text("SELECT extract(epoch FROM clock_timestamp())::double precision")).scalar()
            rows = conn.execute(sa.text("SELECT bucket, sends FROM ops.crm_budget WHERE budget = :b AND name = :n"),
                                {"b": self.key, "n": name}).fetchall()
            before = {int(b): int(n) for b, n in rows}
            kept, wait = _decide(before, now, limit, interval_s)
            gone = [b for b in before if b not in kept]
            if gone:
                conn.execute(sa.text("DELETE FROM ops.crm_budget WHERE budget = :b AND name = :n AND bucket = :k"),
                             [{"b": self.key, "n": name, "k": b} for b in gone])
            if wait == 0.0:
                bucket = max(kept)
                conn.execute(sa.text(
                    "INSERT INTO ops.crm_budget (budget, name, bucket, sends) VALUES (:b, :n, :k, 1) "
                    "ON CONFLICT (budget, name, bucket) DO UPDATE SET sends = ops.crm_budget.sends + 1"),
                    {"b": self.key, "n": name, "k": bucket})
        return wait
