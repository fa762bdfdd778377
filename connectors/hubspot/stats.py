"""Request counters one client keeps (pages, retries, 429s by policy, time slept, records)."""
from __future__ import annotations

import threading


class ClientStats:
    """Thread-safe request counters of one client."""

    FIELDS = (
        "requests",
        "pages",
        "retries",
        "responses_5xx",
        "dropped",
        "timeouts",
        "malformed",
        "outcome_unknown",
        "sleep_seconds",
        "throttle_wait_seconds",
        "records",
        "records_written",
        "write_errors",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            for f in self.FIELDS:
                setattr(self, f, 0.0 if f.endswith("seconds") else 0)
            self.responses_429: dict[str, int] = {}

    def add(self, **counts: float) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def add_429(self, policy: str) -> None:
        with self._lock:
            self.responses_429[policy] = self.responses_429.get(policy, 0) + 1

    def snapshot(self) -> dict:
        with self._lock:
            out = {f: getattr(self, f) for f in self.FIELDS}
            out["responses_429"] = dict(self.responses_429)
        out["responses_429_total"] = sum(out["responses_429"].values())
        return out

    def __repr__(self) -> str:
        return f"ClientStats({self.snapshot()})"
