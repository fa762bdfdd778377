"""Client-side rate limiting for the CRM API (thread-safe, shared by all workers).

HubSpot limits a token to N requests in a rolling ten-second window and, separately,
search to a few requests per second. Hitting either costs a 429 and a wait, so the
client paces itself under both limits (exactly at them in its own process; a little under them
in the budget shared with other processes, which cannot re-stamp) and adapts to what the server says:

* :class:`RollingWindowLimiter` — at most ``floor(max_requests * headroom)`` requests
  in any ``interval_s`` window. A request's slot is stamped when it is sent and
  re-stamped when its response arrives (the server counted it somewhere in between), so
  latency cannot make two windows overlap. The throttle's own window therefore uses the
  whole limit: its count of the last ``interval_s`` never falls below the server's (the
  5 % headroom it used to keep capped a write-back pass at ~94 % of the limit's rate).
* Search's own limit (HubSpot: 5 requests per second) is a second rolling window of the same
  kind, one second long: a walk's few searches go at once instead of one every 0.21 s, and
  the re-stamp keeps any second of the server's count at the limit (a small night made ~12
  searches, and spacing them 0.21 s apart cost ~1.8 s of it).
* :class:`Throttle` — both of the above (search has its own per-second limit and, as in
  the sandbox, does not spend the ten-second budget unless ``searches_count_in_window``), plus reading ``X-HubSpot-RateLimit-Max`` /
  ``-Remaining`` / ``-Interval-Milliseconds`` (server values replace the configured
  window; ``Remaining: 0`` holds new requests until a slot frees) and penalties after a
  429 (``TEN_SECONDLY_ROLLING`` → wait for the window, ``SECONDLY`` → about a second).

With ``shared`` (connectors/shared_budget.py), every request also takes a slot of a budget shared
by all processes calling the same CRM, so that together they stay under its limits. That budget
stamps a slot when it is taken and never re-stamps it, so it keeps the headroom for the latency
between the stamp and the server's count: ``floor(max_requests * headroom)`` per window, and
searches over a window ``1 / headroom`` long (the long-run rate and the latency margin searches
spaced ``1 / (rate * headroom)`` apart had, with a walk's first searches at once).

Clock and sleep are injectable so the limiter can be tested without waiting.
"""
from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

Clock = Callable[[], float]
Sleep = Callable[[float], None]

_MIN_WAIT = 0.001


@dataclass
class _Slot:
    t: float
    done: bool = False


class RollingWindowLimiter:
    """At most ``limit`` requests in any rolling ``interval_s`` window."""

    def __init__(
        self,
        max_requests: int = 100,
        interval_s: float = 10.0,
        headroom: float = 0.95,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
    ) -> None:
        if max_requests < 1 or interval_s <= 0 or not (0 < headroom <= 1):
            raise ValueError("max_requests >= 1, interval_s > 0 and 0 < headroom <= 1 required")
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self.max_requests = int(max_requests)
        self.interval_s = float(interval_s)
        self.headroom = float(headroom)
        self._slots: list[_Slot] = []
        self._blocked_until = 0.0

    @property
    def limit(self) -> int:
        return max(1, math.floor(self.max_requests * self.headroom))

    def configure(self, max_requests: int | None = None, interval_s: float | None = None) -> None:
        with self._lock:
            if max_requests is not None and max_requests >= 1:
                self.max_requests = int(max_requests)
            if interval_s is not None and interval_s > 0:
                self.interval_s = float(interval_s)

    def _expire(self, now: float) -> None:
        horizon = now - self.interval_s
        if self._slots and any(s.done and s.t <= horizon for s in self._slots):
            self._slots = [s for s in self._slots if not (s.done and s.t <= horizon)]

    def _wait_needed(self, now: float) -> float:
        if now < self._blocked_until:
            return self._blocked_until - now
        if len(self._slots) >= self.limit:
            oldest = min(s.t for s in self._slots)
            return max(oldest + self.interval_s - now, _MIN_WAIT)
        return 0.0

    def acquire(self) -> tuple[_Slot, float]:
        """Block until a slot is free; return the slot and the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._expire(now)
                wait = self._wait_needed(now)
                if wait <= 0:
                    slot = _Slot(now)
                    self._slots.append(slot)
                    return slot, waited
            wait = max(wait, _MIN_WAIT)
            self._sleep(wait)
            waited += wait

    def release(self, slot: _Slot) -> None:
        """Mark the request answered; its slot expires ``interval_s`` after now."""
        with self._lock:
            slot.t = max(slot.t, self._clock())
            slot.done = True

    def in_window(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._slots)

    def block_for(self, seconds: float) -> None:
        """Hold every new request for ``seconds`` (keeps the longest hold)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))

    def time_until_slot(self) -> float:
        """Seconds until the oldest slot in the window expires (0 if the window is empty)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            if not self._slots:
                return 0.0
            return max(0.0, min(s.t for s in self._slots) + self.interval_s - now)


@dataclass
class Permit:
    """What :meth:`Throttle.acquire` hands out; give it back to :meth:`Throttle.release`."""

    slot: _Slot | None
    waited: float = 0.0
    search: bool = False
    search_slot: _Slot | None = None


@dataclass
class ServerLimits:
    max: int | None = None
    remaining: int | None = None
    interval_ms: int | None = None
    seen: int = field(default=0)


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


class Throttle:
    """The rolling-window limiter and the search limiter, adapting to server headers."""

    HDR_MAX = "X-HubSpot-RateLimit-Max"
    HDR_REMAINING = "X-HubSpot-RateLimit-Remaining"
    HDR_INTERVAL = "X-HubSpot-RateLimit-Interval-Milliseconds"

    def __init__(
        self,
        requests_per_window: int = 100,
        window_s: float = 10.0,
        searches_per_second: float = 5.0,
        headroom: float = 0.95,
        *,
        searches_count_in_window: bool = False,
        adapt_to_server: bool = True,
        clock: Clock = time.monotonic,
        sleep: Sleep = time.sleep,
        shared=None,
    ) -> None:
        # the whole limit: slots are re-stamped at the response, after the server counted them
        self.window = RollingWindowLimiter(requests_per_window, window_s, 1.0, clock=clock, sleep=sleep)
        self.headroom = float(headroom)   # for the shared budget
        self.shared = shared
        self._sleep = sleep
        if searches_per_second <= 0:
            raise ValueError("searches_per_second > 0 required")
        self.searches_per_second = float(searches_per_second)
        # whole searches per window of at least a second (5/s: 5 per second; 0.5/s: 1 per 2 s)
        per_window = max(1, math.floor(searches_per_second))
        self.search = RollingWindowLimiter(per_window, max(1.0, per_window / searches_per_second), 1.0,
                                           clock=clock, sleep=sleep)
        self.searches_count_in_window = searches_count_in_window
        self.adapt_to_server = adapt_to_server
        self.server = ServerLimits()
        self._lock = threading.Lock()

    def acquire(self, *, search: bool = False) -> Permit:
        waited = 0.0
        search_slot = None
        if search:
            search_slot, waited = self.search.acquire()
        slot = None
        if not search or self.searches_count_in_window:
            slot, w = self.window.acquire()
            waited += w
        if self.shared is not None:
            if search:
                waited += self._take_shared("searches", self.search.max_requests, self.search.interval_s / self.headroom)
            if not search or self.searches_count_in_window:
                waited += self._take_shared("requests", self.shared_limit, self.window.interval_s)
        return Permit(slot, waited, search, search_slot)

    @property
    def shared_limit(self) -> int:
        """The shared budget's requests per window: the limit less the headroom (its slots are
        stamped when taken, before the server counts the request)."""
        return max(1, math.floor(self.window.max_requests * self.headroom))

    def _take_shared(self, name: str, limit: int, interval_s: float) -> float:
        """Wait for a slot of the shared budget; return the seconds waited."""
        waited = 0.0
        while True:
            wait = self.shared.take(name, limit, interval_s)
            if wait <= 0:
                return waited
            self._sleep(wait)
            waited += wait

    def release(self, permit: Permit, headers: Mapping[str, str] | None = None) -> None:
        if permit.slot is not None:
            self.window.release(permit.slot)
        if permit.search_slot is not None:
            self.search.release(permit.search_slot)
        if headers is not None:
            self.observe(headers)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adapt to ``X-HubSpot-RateLimit-*`` headers (absent on search responses)."""
        mx = _int_header(headers, self.HDR_MAX)
        remaining = _int_header(headers, self.HDR_REMAINING)
        interval = _int_header(headers, self.HDR_INTERVAL)
        if mx is None and remaining is None:
            return
        with self._lock:
            self.server.max, self.server.remaining = mx, remaining
            self.server.interval_ms = interval
            self.server.seen += 1
        if self.adapt_to_server and mx is not None and mx >= 1:
            if mx != self.window.max_requests or (
                interval and abs(interval / 1000.0 - self.window.interval_s) > 1e-9
            ):
                self.window.configure(mx, interval / 1000.0 if interval else None)
        if remaining is not None and remaining <= 0:
            # The server's window is full: hold new requests until our oldest slot
            # leaves the window (or a whole interval if we know of no slot).
            wait = self.window.time_until_slot()
            if wait <= 0:
                wait = (interval / 1000.0) if interval else self.window.interval_s
            self.window.block_for(wait)

    def penalize(self, policy: str | None, retry_after_s: float | None = None) -> float:
        """React to a 429; return the hold imposed in seconds."""
        policy = (policy or "").upper()
        if retry_after_s is not None and retry_after_s > 0:
            hold = retry_after_s
        elif policy == "SECONDLY":
            hold = 1.0
        else:
            # TEN_SECONDLY_ROLLING (or unknown): wait for the window to free a slot.
            hold = self.window.time_until_slot() or self.window.interval_s
        if policy == "SECONDLY":
            self.search.block_for(hold)
        else:
            self.window.block_for(hold)
        return hold
