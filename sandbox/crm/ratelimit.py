"""Per-token rate limits: a rolling ten-second window and a per-second search limit."""
from __future__ import annotations

import collections
import threading
import time

TEN_SECONDLY = "TEN_SECONDLY_ROLLING"
SECONDLY = "SECONDLY"
WINDOW_MS = 10_000


class RateLimiter:
    """Only accepted requests are counted. A limit of 0/None disables that policy."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._lock = threading.Lock()
        self._ten: dict[str, collections.deque] = collections.defaultdict(collections.deque)
        self._sec: dict[str, collections.deque] = collections.defaultdict(collections.deque)

    @staticmethod
    def _trim(dq: collections.deque, now: float, window: float) -> None:
        while dq and dq[0] <= now - window:
            dq.popleft()

    def check_ten_secondly(self, token: str, limit: int | None) -> tuple[bool, int]:
        """-> (allowed, remaining after this request)."""
        with self._lock:
            now = self._clock()
            dq = self._ten[token]
            self._trim(dq, now, WINDOW_MS / 1000)
            if not limit or limit <= 0:
                dq.append(now)
                return True, 1_000_000
            if len(dq) >= limit:
                return False, 0
            dq.append(now)
            return True, max(0, limit - len(dq))

    def check_secondly(self, token: str, limit: int | None) -> bool:
        with self._lock:
            now = self._clock()
            dq = self._sec[token]
            self._trim(dq, now, 1.0)
            if limit and limit > 0 and len(dq) >= limit:
                return False
            dq.append(now)
            return True

    def reset(self) -> None:
        with self._lock:
            self._ten.clear()
            self._sec.clear()
