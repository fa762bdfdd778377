"""Fault-injection knobs and request statistics of the sandbox CRM."""
from __future__ import annotations

import collections
import os
import random
import threading
from typing import Any

#: knob name -> (type, default). Env var: TRUEUP_SANDBOX_<NAME upper>.
KNOB_SPECS: dict[str, tuple[type, Any]] = {
    "rate_limit_10s": (int, 100),             # requests per rolling 10 s per token (0 = unlimited)
    "search_per_second": (int, 5),            # search requests per second per token (0 = unlimited)
    "error_rate_5xx": (float, 0.0),           # probability of a random 502/503/504 (request NOT applied)
    "latency_ms": (int, 0),                   # added latency per request
    "drop_rate": (float, 0.0),                # probability the socket is closed without a response
                                              # (AFTER the request was applied: an "unknown" outcome)
    "malformed_rate": (float, 0.0),           # probability a 200 body is truncated JSON
    "unacknowledged_rate": (float, 0.0),      # probability a batch write's 2xx answer leaves one applied
                                              # input out of its results (an "unknown" outcome)
    "frozen_timestamp_ms": (int, None),       # stamp every API write with this ms while set
    "search_visibility_delay_ms": (int, 0),   # API writes visible to search only after N ms
    "seed": (int, None),                      # seed of the fault RNG
}
KNOB_NAMES = tuple(KNOB_SPECS)


def _coerce(name: str, value: Any) -> Any:
    if name not in KNOB_SPECS:
        raise KeyError(f"unknown knob {name!r}; known: {', '.join(KNOB_NAMES)}")
    typ, _ = KNOB_SPECS[name]
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
        return None if KNOB_SPECS[name][1] is None else KNOB_SPECS[name][1]
    if typ is int:
        return int(float(value))
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {v}")
    return v


def knobs_from_env(environ: dict | None = None) -> dict[str, Any]:
    env = os.environ if environ is None else environ
    out = {}
    for name in KNOB_NAMES:
        raw = env.get(f"TRUEUP_SANDBOX_{name.upper()}")
        if raw is not None and raw != "":
            out[name] = _coerce(name, raw)
    return out


class Faults:
    """Current knob values, the seeded fault RNG and the request counters."""

    def __init__(self, knobs: dict | None = None):
        self._lock = threading.Lock()
        self.knobs: dict[str, Any] = {n: d for n, (_, d) in KNOB_SPECS.items()}
        self.rng = random.Random()
        self.set(**knobs_from_env())
        self.set(**(knobs or {}))
        self.reset_stats()

    def set(self, **kw: Any) -> dict[str, Any]:
        with self._lock:
            for k, v in kw.items():
                self.knobs[k] = _coerce(k, v)
            if "seed" in kw:
                self.rng = random.Random(self.knobs["seed"])
            return dict(self.knobs)

    def get(self, name: str) -> Any:
        return self.knobs[name]

    def roll(self, name: str) -> bool:
        p = self.knobs[name] or 0.0
        if p <= 0:
            return False
        with self._lock:
            return self.rng.random() < p

    def choice(self, seq):
        with self._lock:
            return self.rng.choice(seq)

    # ------------------------------------------------------------------ stats
    def reset_stats(self) -> None:
        with self._lock:
            self._by_kind: collections.Counter = collections.Counter()
            self._by_status: collections.Counter = collections.Counter()
            self._by_policy: collections.Counter = collections.Counter()
            self._faults: collections.Counter = collections.Counter()
            self._records = 0

    def record(self, kind: str, status: int | str, records: int = 0, policy: str | None = None,
               fault: str | None = None) -> None:
        with self._lock:
            self._by_kind[kind] += 1
            self._by_status[str(status)] += 1
            self._records += records
            if policy:
                self._by_policy[policy] += 1
            if fault:
                self._faults[fault] += 1

    def stats(self) -> dict:
        with self._lock:
            return {
                "requests_total": sum(self._by_kind.values()),
                "requests_by_kind": dict(self._by_kind),
                "requests_by_status": dict(self._by_status),
                "rate_limited_by_policy": dict(self._by_policy),
                "faults": dict(self._faults),
                "records_returned": self._records,
                "knobs": dict(self.knobs),
            }
