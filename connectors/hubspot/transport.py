"""One HTTP call to the CRM, paced, classified and retried — what every read, search and write goes through.

* pacing: a shared client-side :class:`~connectors.throttle.Throttle` (rolling ten-second
  window, search per second, server headers, 429 policies) and at most ``max_concurrency``
  requests in flight;
* classified errors (docs/architecture.md, rule 6): 429/5xx/timeouts/dropped connections/truncated
  bodies are retried with exponential backoff and full jitter; 400/401/403/404 raise
  :class:`PermanentError` at once; a *write* whose outcome is unknown (timeout, dropped
  connection, unreadable answer) is never resent blindly: it raises :class:`TransientError`
  with ``outcome_unknown=True`` so the caller's ledger reads back.

The token is only ever placed in the ``Authorization`` header; it is never logged and is
scrubbed from every message this package builds.
"""
from __future__ import annotations

import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Self

import requests
from requests.adapters import HTTPAdapter

from trueup.connectors.errors import PermanentError, TransientError, one_line
from trueup.connectors.hubspot.connection import TOKEN_HINT, classify_network_failure, require_safe_url
from trueup.connectors.hubspot.stats import ClientStats
from trueup.connectors.throttle import Throttle

# the package's name, as when the client was one module: log configuration keeps matching it
log = logging.getLogger(__package__)

RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class _Attempt:
    """What went wrong in one attempt that may be retried."""

    __slots__ = ("reason", "delay_floor")

    def __init__(self, reason: str, delay_floor: float = 0.0) -> None:
        self.reason = reason
        self.delay_floor = delay_floor


class CrmTransport:
    """The client's HTTP session, pacing and retries; reads, search and writes build on it."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        requests_per_10s: int = 100,
        searches_per_second: float = 5,
        max_concurrency: int = 4,
        timeout: float = 30,
        max_retries: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 30,
        rng_seed: int | None = None,
        headroom: float = 0.95,
        window_seconds: float = 10.0,
        searches_count_in_window: bool = False,
        throttle: Throttle | None = None,
        sleep: Callable[[float], None] = time.sleep,
        shared_budget=None,
    ) -> None:
        if not base_url:
            raise PermanentError("CRM client: empty base URL — check TRUEUP_CRM_BASE_URL")
        if not token:
            raise PermanentError(f"CRM client: empty token — {TOKEN_HINT}")
        require_safe_url(base_url)
        self.base_url = base_url.rstrip("/")
        self.__token = token
        self.max_concurrency = max(1, int(max_concurrency))
        self.timeout = timeout
        self.max_retries = max(0, int(max_retries))
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._sleep = sleep
        self._rng = random.Random(rng_seed)
        self._rng_lock = threading.Lock()
        self._sem = threading.BoundedSemaphore(self.max_concurrency)
        self.throttle = throttle or Throttle(
            requests_per_10s,
            window_seconds,
            searches_per_second,
            headroom,
            searches_count_in_window=searches_count_in_window,
            shared=shared_budget,   # one budget with every other process calling this CRM
        )
        self.stats = ClientStats()
        self._session = requests.Session()
        adapter = HTTPAdapter(
            pool_connections=2, pool_maxsize=self.max_concurrency + 2, max_retries=0
        )
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update(
            {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                "Content-Type": "application/json",
                "User-Agent": "trueup-crm-connector/1",
            }
        )
        self._session.trust_env = False  # no proxies / netrc picked up behind our back

    # -- housekeeping --------------------------------------------------------------

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset_stats(self) -> None:
        self.stats.reset()

    def _scrub(self, text: object) -> str:
        s = one_line(text)
        return s.replace(self.__token, "***") if self.__token else s

    def _jitter(self, upper: float) -> float:
        with self._rng_lock:
            return self._rng.uniform(0, max(0.0, upper))

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform(0, min(cap, base * 2**attempt))."""
        return self._jitter(min(self.backoff_cap, self.backoff_base * (2 ** attempt)))

    # -- one HTTP call with classification and retries --------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        object_type: str,
        op: str,
        params: dict | None = None,
        body: dict | None = None,
        search: bool = False,
        write: bool = False,
    ) -> tuple[int, dict]:
        """Send one request; return ``(status, json)`` for a 2xx or raise a SyncError."""
        url = self.base_url + path
        what = f"CRM {object_type} {op}"
        attempt = 0
        while True:
            outcome: _Attempt
            with self._sem:
                permit = self.throttle.acquire(search=search)
                if permit.waited:
                    self.stats.add(sleep_seconds=permit.waited, throttle_wait_seconds=permit.waited)
                self.stats.add(requests=1)
                try:
                    resp = self._session.request(
                        method, url, params=params, json=body, timeout=self.timeout
                    )
                except requests.RequestException as exc:
                    self.throttle.release(permit)
                    resp = None
                    net_exc = exc
                else:
                    self.throttle.release(permit, resp.headers)

            if resp is None:
                kind, maybe_applied = classify_network_failure(net_exc)
                if kind == "invalid_url":
                    raise PermanentError(
                        f"{what} failed: invalid base URL — check TRUEUP_CRM_BASE_URL",
                        object_type=object_type, operation=op,
                    ) from None
                if kind == "timeout":
                    self.stats.add(timeouts=1)
                else:
                    self.stats.add(dropped=1)
                if write and maybe_applied:
                    self.stats.add(outcome_unknown=1)
                    raise TransientError(
                        f"{what} outcome unknown: {kind.replace('_', ' ')} — read back before resending",
                        object_type=object_type, operation=op, outcome_unknown=True,
                    ) from None
                outcome = _Attempt(kind.replace("_", " "))
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    data = self._parse_json(resp)
                    if data is not None:
                        return status, data
                    self.stats.add(malformed=1)
                    if write:
                        self.stats.add(outcome_unknown=1)
                        raise TransientError(
                            f"{what} outcome unknown: unreadable {status} response — read back before resending",
                            status=status, object_type=object_type, operation=op, outcome_unknown=True,
                        )
                    outcome = _Attempt(f"unreadable {status} response")
                elif status == 429:
                    payload = self._parse_json(resp) or {}
                    policy = str(payload.get("policyName") or "UNKNOWN").upper()
                    self.stats.add_429(policy)
                    hold = self.throttle.penalize(policy, self._retry_after(resp))
                    outcome = _Attempt(f"429 {policy}", delay_floor=0.0 if hold else 1.0)
                elif status in RETRYABLE_STATUS or status >= 500:
                    if status >= 500:
                        self.stats.add(responses_5xx=1)
                    outcome = _Attempt(f"{status} {self._category(resp)}", self._retry_after(resp) or 0.0)
                else:
                    raise self._permanent(what, resp, object_type, op)

            attempt += 1
            if attempt > self.max_retries:
                raise TransientError(
                    f"{what} failed after {attempt} attempts: {outcome.reason}",
                    object_type=object_type, operation=op,
                )
            self.stats.add(retries=1)
            if outcome.reason.startswith("429"):
                # the throttle already holds new requests for the window; add a little jitter
                delay = max(outcome.delay_floor, self._jitter(self.backoff_base))
            else:
                delay = max(outcome.delay_floor, self._backoff(attempt - 1))
            log.debug("%s: %s; retry %d in %.2fs", what, outcome.reason, attempt, delay)
            if delay > 0:
                self.stats.add(sleep_seconds=delay)
                self._sleep(delay)

    @staticmethod
    def _parse_json(resp: requests.Response) -> dict | None:
        try:
            data = resp.json()
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    @staticmethod
    def _retry_after(resp: requests.Response) -> float | None:
        value = resp.headers.get("Retry-After")
        if not value:
            return None
        try:
            return min(float(value), 120.0)
        except ValueError:
            return None

    def _category(self, resp: requests.Response) -> str:
        payload = self._parse_json(resp) or {}
        return str(payload.get("category") or payload.get("errorType") or resp.reason or "ERROR")

    def _permanent(self, what: str, resp: requests.Response, object_type: str, op: str) -> PermanentError:
        status = resp.status_code
        payload = self._parse_json(resp) or {}
        category = str(payload.get("category") or payload.get("errorType") or resp.reason or "ERROR")
        message = payload.get("message") or ""
        if status == 401:
            detail = TOKEN_HINT
        elif status == 403:
            detail = f"the token lacks a required scope — {TOKEN_HINT}"
        elif status == 404 and not message:
            detail = "not found — check TRUEUP_CRM_BASE_URL and the object type"
        else:
            detail = self._scrub(message) or "request rejected"
        return PermanentError(
            self._scrub(f"{what} failed: {status} {category} — {detail}"),
            status=status, category=category, object_type=object_type, operation=op,
        )

    # -- fan-out ------------------------------------------------------------------

    def _map_chunks(self, fn: Callable[[Any], Any], chunks: list) -> list:
        """Run ``fn`` over chunks with up to ``max_concurrency`` in flight; keep order."""
        if len(chunks) <= 1 or self.max_concurrency == 1:
            return [fn(c) for c in chunks]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(chunks))) as pool:
            futures = [pool.submit(fn, c) for c in chunks]
            results, first_exc = [], None
            for f in futures:
                try:
                    results.append(f.result())
                except BaseException as exc:  # collect, then raise the first
                    first_exc = first_exc or exc
            if first_exc:
                raise first_exc
            return results
