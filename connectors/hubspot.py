"""HubSpot CRM v3 client (spec/crm_api.md) — knows nothing of Dagster.

Works unchanged against a real portal (``https://api.hubapi.com`` + a private-app token)
and against the local sandbox. What it takes care of:

* paging (``after`` cursors for lists, offsets for search) and chunking (100 per batch);
* the search cap — a query can page at most 10,000 results, so :meth:`search_modified`
  counts a time window first, splits it in halves while it holds more than that, and walks
  a single millisecond that still holds more (bulk updates) by ``hs_object_id`` keyset;
* rate limits — a shared client-side :class:`~connectors.throttle.Throttle` (rolling
  ten-second window, search per second, server headers, 429 policies);
* classified errors (DESIGN principle 6) — 429/5xx/timeouts/dropped connections/truncated
  bodies are retried with exponential backoff and full jitter; 400/401/403/404 raise
  :class:`PermanentError` at once; a batch *write* whose outcome is unknown (timeout,
  dropped connection, unreadable answer) is never resent blindly: it raises
  :class:`TransientError` with ``outcome_unknown=True`` so the caller's ledger reads back;
* a 207 is not an exception: :class:`BatchOutcome` maps each error to the input ids.

The token is only ever placed in the ``Authorization`` header; it is never logged and is
scrubbed from every message this module builds.
"""
from __future__ import annotations

import datetime as dt
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence

import requests
from requests.adapters import HTTPAdapter

from connectors.errors import PermanentError, SyncError, TransientError, one_line
from connectors.throttle import Throttle

log = logging.getLogger(__name__)

SEARCH_CAP = 10_000  # results one search query can page through (after >= cap → 400)
SEARCH_PAGE = 200
LIST_PAGE = 100
BATCH_SIZE = 100
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
TOKEN_HINT = "check TRUEUP_CRM_TOKEN"


def require_safe_url(base_url: str) -> None:
    """The bearer token travels in every request: plain http:// only to this machine."""
    from urllib.parse import urlsplit
    import ipaddress

    parts = urlsplit(base_url)
    if parts.scheme == "https":
        return
    host = (parts.hostname or "").lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if parts.scheme != "http" or not loopback:
        raise PermanentError(f"refusing CRM URL {parts.scheme}://{parts.hostname or ''}…: the token would travel in "
                             f"clear; use https:// (plain http:// only to 127.0.0.1) — check TRUEUP_CRM_BASE_URL")


def check_crm(base_url: str, token: str, timeout: float = 5.0) -> None:
    """One request, no retries: is the CRM there, and does it take the token? Raises a one-line
    TransientError (unreachable, overloaded) or PermanentError (token refused) — so a run fails
    in seconds instead of after minutes of retries."""
    require_safe_url(base_url)
    url = base_url.rstrip("/") + "/crm/v3/objects/companies"
    try:
        with requests.Session() as session:
            session.trust_env = False
            resp = session.get(url, params={"limit": 1}, timeout=timeout,
                               headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    except requests.RequestException as exc:
        kind, maybe_answered = HubSpotClient._network_failure(exc)
        # category "unreachable": the request reached no server (refused, no connection in time);
        # else something answered, badly (a dropped or slow answer), which retries may get past
        raise TransientError(f"CRM at {base_url} is not reachable ({kind.replace('_', ' ')})",
                             category=kind if maybe_answered else "unreachable") from None
    if resp.status_code == 401:
        raise PermanentError(f"CRM at {base_url} rejected the token (401) — {TOKEN_HINT}", status=401)
    if resp.status_code == 403:
        raise PermanentError(f"CRM at {base_url} refused the token (403): it lacks a required scope — {TOKEN_HINT}",
                             status=403)
    if resp.status_code >= 500:
        raise TransientError(f"CRM at {base_url} answers {resp.status_code}: try again later", status=resp.status_code)
    if resp.status_code == 404:
        raise PermanentError(f"CRM at {base_url} has no CRM v3 API (404) — check TRUEUP_CRM_BASE_URL", status=404)


def default_modified_property(object_type: str) -> str:
    """Contacts call it ``lastmodifieddate``; everything else ``hs_lastmodifieddate``."""
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


def to_epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds from an epoch-ms string/number or an ISO-8601 timestamp."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value)
    s = str(value).strip()
    if s.lstrip("-").isdigit():
        return int(s)
    try:
        ts = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    return int(round(ts.timestamp() * 1000))


# --------------------------------------------------------------------------- results


ASSOCIATION_BATCH_SIZE = 1000


@dataclass
class BatchOutcome:
    """Result of a batch write: applied records and per-input errors.

    A 207 (some inputs failed, the others were applied) is an outcome, not an exception.

    ``errors`` entries are ``{"ids": [...], "message": str, "category": str}`` where the
    ids are the *input* ids (the ``id`` the caller passed: an idProperty value for
    upserts, a record id for updates).
    """

    results: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    applied_ids: list[str] = field(default_factory=list)  # input ids found in ``results``

    @property
    def error_ids(self) -> set[str]:
        return {i for e in self.errors for i in e["ids"]}

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, other: "BatchOutcome") -> None:
        self.results.extend(other.results)
        self.errors.extend(other.errors)
        self.applied_ids.extend(other.applied_ids)


@dataclass
class SearchWindow:
    start_ms: int
    end_ms: int
    total: int | None  # as reported by the server (None if never asked)
    mode: str  # "empty" | "paged" | "split" | "keyset" | "capped"
    queries: int = 0
    records: int = 0  # new (not previously yielded) records from this window
    estimated: bool = False  # total derived from the parent, not asked


@dataclass
class SearchStats:
    object_type: str
    start_ms: int
    end_ms: int
    modified_property: str
    total: int | None = None  # top-level count for [start_ms, end_ms)
    records: int = 0  # distinct records yielded
    duplicates: int = 0  # records seen again within the call (skipped)
    queries: int = 0  # search requests made (counts + pages)
    count_queries: int = 0
    splits: int = 0
    keyset_walks: int = 0
    max_offset: int = 0  # highest ``after`` offset requested (must stay < SEARCH_CAP)
    windows: list[SearchWindow] = field(default_factory=list)
    finished: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


class SearchRun:
    """Iterator over the records of one :meth:`HubSpotClient.search_modified` call.

    ``.stats`` (:class:`SearchStats`) fills in while iterating; it is complete once the
    iterator is exhausted (``stats.finished``).
    """

    def __init__(self, gen_factory: Callable[["SearchStats"], Iterator[dict]], stats: SearchStats):
        self.stats = stats
        self._gen = gen_factory(stats)

    def __iter__(self) -> "SearchRun":
        return self

    def __next__(self) -> dict:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()


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

    @property
    def total_429(self) -> int:
        with self._lock:
            return sum(self.responses_429.values())

    def snapshot(self) -> dict:
        with self._lock:
            out = {f: getattr(self, f) for f in self.FIELDS}
            out["responses_429"] = dict(self.responses_429)
        out["responses_429_total"] = sum(out["responses_429"].values())
        return out

    def __repr__(self) -> str:
        return f"ClientStats({self.snapshot()})"


# --------------------------------------------------------------------------- client


class _Attempt:
    """What went wrong in one attempt that may be retried."""

    __slots__ = ("reason", "delay_floor")

    def __init__(self, reason: str, delay_floor: float = 0.0) -> None:
        self.reason = reason
        self.delay_floor = delay_floor


class HubSpotClient:
    """HubSpot CRM v3 client. Thread-safe; share one per token."""

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
        )
        self.stats = ClientStats()
        self.last_search_stats: SearchStats | None = None
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

    def __repr__(self) -> str:
        return f"HubSpotClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> "HubSpotClient":
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
                kind, maybe_applied = self._network_failure(net_exc)
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

    @staticmethod
    def _network_failure(exc: requests.RequestException) -> tuple[str, bool]:
        """Classify a transport failure: (kind, request may have been applied)."""
        import urllib3.exceptions as u3

        if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                            requests.exceptions.InvalidSchema)):
            return "invalid_url", False
        if isinstance(exc, requests.ConnectTimeout):
            return "timeout", False
        if isinstance(exc, requests.Timeout):
            return "timeout", True
        if isinstance(exc, requests.ConnectionError):
            reason = None
            for arg in exc.args:
                if isinstance(arg, u3.MaxRetryError):
                    reason = arg.reason
                elif isinstance(arg, BaseException):
                    reason = arg
            if isinstance(reason, (u3.NewConnectionError, u3.ConnectTimeoutError)):
                return "connection_refused", False
            return "dropped_connection", True
        # ChunkedEncodingError, ContentDecodingError, …: the response was cut short
        return "dropped_connection", True

    # -- reads --------------------------------------------------------------------

    def list_records(
        self,
        object_type: str,
        properties: Sequence[str],
        *,
        archived: bool = False,
        associations: Sequence[str] | str | None = None,
    ) -> Iterator[list[dict]]:
        """Every record of ``object_type`` (archived ones if ``archived``), 100 per page."""
        params: dict[str, Any] = {"limit": LIST_PAGE, "archived": "true" if archived else "false"}
        if properties:
            params["properties"] = ",".join(properties)
        if associations:
            params["associations"] = associations if isinstance(associations, str) else ",".join(associations)
        after: str | None = None
        while True:
            p = dict(params)
            if after:
                p["after"] = after
            _, data = self._request(
                "GET", f"/crm/v3/objects/{object_type}", object_type=object_type, op="list", params=p
            )
            results = data.get("results") or []
            self.stats.add(pages=1, records=len(results))
            if results:
                yield results
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def batch_read(
        self,
        object_type: str,
        ids: Iterable[str],
        properties: Sequence[str],
        *,
        id_property: str | None = None,
        archived: bool = False,
    ) -> list[dict]:
        """Read records by id (or by a unique ``id_property``, which is then always among
        the returned properties); ids that do not exist are simply absent."""
        ids = [str(i) for i in dict.fromkeys(ids)]
        # the id property comes back too, so results can be matched to the ids asked
        props = list(dict.fromkeys([*properties, *([id_property] if id_property else [])]))
        chunks = [ids[i : i + BATCH_SIZE] for i in range(0, len(ids), BATCH_SIZE)]

        def read(chunk: list[str]) -> list[dict]:
            body: dict[str, Any] = {"inputs": [{"id": i} for i in chunk], "properties": props}
            if id_property:
                body["idProperty"] = id_property
            if archived:  # HubSpot reads the query parameter; the sandbox reads the body
                body["archived"] = True
            _, data = self._request(
                "POST", f"/crm/v3/objects/{object_type}/batch/read", object_type=object_type,
                op="batch read", params={"archived": "true" if archived else "false"}, body=body,
            )
            results = data.get("results") or []
            self.stats.add(pages=1, records=len(results))
            return results

        out: list[dict] = []
        for part in self._map_chunks(read, chunks):
            out.extend(part)
        return out

    def read_associations(self, from_type: str, to_type: str, ids: Iterable[str]) -> dict[str, str]:
        """``{from_id: to_id}`` — the (first, lowest-id) ``to_type`` record each id is associated with.

        Uses ``POST /crm/v4/associations/{from}/{to}/batch/read`` (HubSpot). Where that route
        does not exist (404 — the sandbox implements associations only on list and single
        reads) it falls back to ``GET /crm/v3/objects/{from}/{id}?associations={to}``, one
        request per id. Ids without an association (or that do not exist) are absent.
        """
        ids = [str(i) for i in dict.fromkeys(ids)]
        if not ids:
            return {}
        out: dict[str, str] = {}
        if not getattr(self, "_assoc_batch_missing", False):
            # the v4 association batch read takes up to 1,000 ids (HubSpot, since 2025)
            n = ASSOCIATION_BATCH_SIZE
            chunks = [ids[i : i + n] for i in range(0, len(ids), n)]

            def read(chunk: list[str]) -> list[dict]:
                _, data = self._request(
                    "POST", f"/crm/v4/associations/{from_type}/{to_type}/batch/read",
                    object_type=from_type, op=f"{to_type} associations read",
                    body={"inputs": [{"id": i} for i in chunk]},
                )
                self.stats.add(pages=1)
                return data.get("results") or []

            try:
                parts = self._map_chunks(read, chunks[:1])
            except PermanentError as exc:
                if exc.status != 404:
                    raise
                self._assoc_batch_missing = True
            else:
                parts += self._map_chunks(read, chunks[1:])
                for results in parts:
                    for res in results:
                        src = str((res.get("from") or {}).get("id"))
                        tos = [str(t.get("toObjectId") or t.get("id")) for t in res.get("to") or []]
                        tos = [t for t in tos if t and t != "None"]
                        if tos:
                            out[src] = min(tos, key=lambda t: (len(t), t))
                return out

        def get_one(rid: str) -> tuple[str, str | None]:
            try:
                _, data = self._request(
                    "GET", f"/crm/v3/objects/{from_type}/{rid}", object_type=from_type,
                    op=f"{to_type} associations read",
                    params={"associations": to_type, "properties": "hs_object_id"},
                )
            except PermanentError as exc:
                if exc.status == 404:
                    return rid, None
                raise
            tos = [str(t.get("id")) for t in ((data.get("associations") or {}).get(to_type) or {}).get("results") or []]
            return rid, (min(tos, key=lambda t: (len(t), t)) if tos else None)

        for rid, to in self._map_chunks(get_one, ids):
            if to is not None:
                out[rid] = to
        return out

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

    # -- search -------------------------------------------------------------------

    def search_modified(
        self,
        object_type: str,
        start_ms: int,
        end_ms: int,
        properties: Sequence[str],
        *,
        modified_property: str | None = None,
    ) -> SearchRun:
        """Every non-archived record modified in ``[start_ms, end_ms)``, each once.

        Returns an iterator of records; its ``.stats`` (also ``client.last_search_stats``)
        lists the windows it asked, split and walked.
        """
        prop = modified_property or default_modified_property(object_type)
        stats = SearchStats(object_type, int(start_ms), int(end_ms), prop)
        self.last_search_stats = stats
        props = list(dict.fromkeys([*properties, prop, "hs_object_id"]))
        return SearchRun(
            lambda st: self._search_gen(object_type, int(start_ms), int(end_ms), props, prop, st), stats
        )

    def _search(self, object_type: str, body: dict, stats: SearchStats) -> dict:
        stats.queries += 1
        after = int(body.get("after") or 0)
        stats.max_offset = max(stats.max_offset, after)
        _, data = self._request(
            "POST", f"/crm/v3/objects/{object_type}/search", object_type=object_type,
            op="search", body=body, search=True,
        )
        return data

    @staticmethod
    def _window_filters(prop: str, lo: int, hi: int) -> list[dict]:
        return [
            {"propertyName": prop, "operator": "GTE", "value": str(lo)},
            {"propertyName": prop, "operator": "LT", "value": str(hi)},
        ]

    def _count(self, object_type: str, prop: str, lo: int, hi: int, stats: SearchStats) -> int:
        stats.count_queries += 1
        body = {
            "filterGroups": [{"filters": self._window_filters(prop, lo, hi)}],
            "properties": ["hs_object_id"],
            "limit": 1,
        }
        return int(self._search(object_type, body, stats).get("total") or 0)

    def _search_gen(
        self, object_type: str, lo0: int, hi0: int, props: list[str], prop: str, stats: SearchStats
    ) -> Iterator[dict]:
        if hi0 <= lo0:
            stats.total = 0
            stats.finished = True
            return
        seen: set[str] = set()

        def emit(records: list[dict], window: SearchWindow) -> Iterator[dict]:
            new = 0
            for rec in records:
                rid = str(rec.get("id"))
                if rid in seen:
                    stats.duplicates += 1
                    continue
                seen.add(rid)
                new += 1
                yield rec
            window.records += new
            stats.records += new
            self.stats.add(records=new)

        stats.total = self._count(object_type, prop, lo0, hi0, stats)
        # (lo, hi, total, estimated) — a stack processed so windows come out in time order
        stack: list[tuple[int, int, int, bool]] = [(lo0, hi0, stats.total, False)]
        while stack:
            lo, hi, total, estimated = stack.pop()
            if hi <= lo:
                continue
            if total == 0 and not estimated:
                stats.windows.append(SearchWindow(lo, hi, 0, "empty"))
                continue
            if hi - lo == 1:
                w = SearchWindow(lo, hi, total, "keyset", estimated=estimated)
                stats.windows.append(w)
                stats.keyset_walks += 1
                yield from self._keyset_walk(object_type, prop, lo, props, stats, w, emit)
                continue
            if total > SEARCH_CAP:
                mid = lo + (hi - lo) // 2
                left = self._count(object_type, prop, lo, mid, stats)
                stats.splits += 1
                stats.windows.append(SearchWindow(lo, hi, total, "split", queries=1, estimated=estimated))
                stack.append((mid, hi, max(total - left, 0), True))
                stack.append((lo, mid, left, False))
                continue
            # ≤ cap (or estimated): page sorted by modification time; the first page's
            # total is authoritative — if it is over the cap after all, split instead.
            w = SearchWindow(lo, hi, total, "paged", estimated=estimated)
            after: str | None = None
            last_ms: int | None = None
            first = True
            while True:
                body: dict[str, Any] = {
                    "filterGroups": [{"filters": self._window_filters(prop, lo, hi)}],
                    "sorts": [{"propertyName": prop, "direction": "ASCENDING"}],
                    "properties": props,
                    "limit": SEARCH_PAGE,
                }
                if after:
                    body["after"] = after
                data = self._search(object_type, body, stats)
                w.queries += 1
                if first:
                    first = False
                    real = int(data.get("total") or 0)
                    w.total, w.estimated = real, False
                    if real > SEARCH_CAP:
                        w.mode = "split"
                        stats.windows.append(w)
                        stack.append((lo, hi, real, False))
                        break
                    if real == 0:
                        w.mode = "empty"
                results = data.get("results") or []
                self.stats.add(pages=1)
                if results:
                    last_ms = to_epoch_ms((results[-1].get("properties") or {}).get(prop)) or last_ms
                    yield from emit(results, w)
                nxt = ((data.get("paging") or {}).get("next") or {}).get("after")
                if not nxt or not results:
                    stats.windows.append(w)
                    break
                if int(nxt) >= SEARCH_CAP:
                    # the window grew past the cap while we paged: continue from the
                    # last modification time seen (duplicates are skipped)
                    w.mode = "capped"
                    stats.windows.append(w)
                    restart = max(lo, last_ms if last_ms is not None else lo)
                    stack.append((restart, hi, SEARCH_CAP + 1 if restart == lo else 0, restart != lo))
                    break
                after = str(nxt)
        stats.finished = True

    def _keyset_walk(
        self,
        object_type: str,
        prop: str,
        ms: int,
        props: list[str],
        stats: SearchStats,
        window: SearchWindow,
        emit: Callable[[list[dict], SearchWindow], Iterator[dict]],
    ) -> Iterator[dict]:
        """All records modified at exactly ``ms``, by ``hs_object_id`` keyset (one sort).

        Every page is a fresh query ``modified EQ ms AND hs_object_id GT last_id``, so
        the offset never approaches the cap however many records share the millisecond.
        """
        last_id: str | None = None
        while True:
            filters = [{"propertyName": prop, "operator": "EQ", "value": str(ms)}]
            if last_id is not None:
                filters.append({"propertyName": "hs_object_id", "operator": "GT", "value": last_id})
            body = {
                "filterGroups": [{"filters": filters}],
                "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}],
                "properties": props,
                "limit": SEARCH_PAGE,
            }
            data = self._search(object_type, body, stats)
            window.queries += 1
            if last_id is None:
                window.total, window.estimated = int(data.get("total") or 0), False
            results = data.get("results") or []
            self.stats.add(pages=1)
            if not results:
                return
            yield from emit(results, window)
            new_last = str(results[-1].get("id"))
            if new_last == last_id:
                raise SyncError(
                    f"CRM {object_type} search failed: keyset on hs_object_id made no progress at {ms}",
                    error_class="contract", object_type=object_type, operation="search",
                )
            last_id = new_last
            nxt = (data.get("paging") or {}).get("next")
            if not nxt and len(results) < SEARCH_PAGE:
                return

    # -- writes -------------------------------------------------------------------

    def batch_upsert(self, object_type: str, id_property: str, inputs: Sequence[dict]) -> BatchOutcome:
        """Create-or-update by a unique property. ``inputs``: ``[{"id": value, "properties": {...}}]``."""
        payload = [
            {"idProperty": id_property, "id": str(i["id"]), "properties": dict(i.get("properties") or {})}
            for i in inputs
        ]

        def result_key(rec: dict) -> str | None:
            v = (rec.get("properties") or {}).get(id_property)
            return None if v is None else str(v)

        return self._batch_write(object_type, "batch upsert", "upsert", payload, result_key)

    def batch_update(self, object_type: str, inputs: Sequence[dict]) -> BatchOutcome:
        """Update records by id. ``inputs``: ``[{"id": record_id, "properties": {...}}]``."""
        payload = [{"id": str(i["id"]), "properties": dict(i.get("properties") or {})} for i in inputs]
        return self._batch_write(object_type, "batch update", "update", payload, lambda r: str(r.get("id")))

    def _batch_write(
        self,
        object_type: str,
        op: str,
        endpoint: str,
        payload: list[dict],
        result_key: Callable[[dict], str | None],
    ) -> BatchOutcome:
        chunks = [payload[i : i + BATCH_SIZE] for i in range(0, len(payload), BATCH_SIZE)]

        def write(chunk: list[dict]) -> BatchOutcome | SyncError:
            try:
                _, data = self._request(
                    "POST", f"/crm/v3/objects/{object_type}/batch/{endpoint}", object_type=object_type,
                    op=op, body={"inputs": chunk}, write=True,
                )
            except SyncError as exc:  # rejected (4xx), retries spent, or outcome unknown
                exc.chunk_ids = [c["id"] for c in chunk]  # type: ignore[attr-defined]
                return exc
            return self._map_outcome(chunk, data, result_key)

        outcome = BatchOutcome()
        failures: list[SyncError] = []
        for part in self._map_chunks(write, chunks):
            if isinstance(part, BatchOutcome):
                outcome.extend(part)
            else:
                failures.append(part)
        self.stats.add(records_written=len(outcome.results), write_errors=len(outcome.error_ids))
        if not failures:
            return outcome
        permanent = [f for f in failures if isinstance(f, PermanentError)]
        if permanent:
            exc = permanent[0]
        else:
            unknown = [f for f in failures if f.outcome_unknown]
            exc = unknown[0] if unknown else failures[0]
            n_chunks = len(failures)
            if n_chunks > 1:
                exc = TransientError(
                    f"{exc.message} ({n_chunks} of {len(chunks)} chunks affected)",
                    object_type=object_type, operation=op, outcome_unknown=bool(unknown),
                )
        exc.outcome = outcome  # type: ignore[attr-defined]  — what did get applied / rejected
        exc.unknown_ids = [  # type: ignore[attr-defined]
            i for f in failures if f.outcome_unknown for i in getattr(f, "chunk_ids", [])
        ]
        exc.failed_ids = [  # type: ignore[attr-defined]
            i for f in failures if not f.outcome_unknown for i in getattr(f, "chunk_ids", [])
        ]
        raise exc

    @staticmethod
    def _error_ids(err: dict) -> list[str]:
        ctx = err.get("context") or {}
        ids = ctx.get("ids") or ctx.get("id") or []
        if isinstance(ids, (str, int)):
            ids = [ids]
        return [str(i) for i in ids]

    def _map_outcome(
        self, chunk: list[dict], data: dict, result_key: Callable[[dict], str | None]
    ) -> BatchOutcome:
        results = list(data.get("results") or [])
        chunk_ids = [c["id"] for c in chunk]
        in_chunk = set(chunk_ids)
        errors: list[dict] = []
        unattributed: list[dict] = []
        named: set[str] = set()
        for err in data.get("errors") or []:
            ids = [i for i in self._error_ids(err) if i in in_chunk]
            entry = {
                "ids": ids,
                "message": self._scrub(err.get("message") or "error"),
                "category": str(err.get("category") or "ERROR"),
            }
            if ids:
                named.update(ids)
                errors.append(entry)
            else:
                unattributed.append(entry)
        applied = {k for k in (result_key(r) for r in results) if k is not None}
        if unattributed:
            leftover = [i for i in chunk_ids if i not in named and i not in applied]
            if leftover:
                first = unattributed[0]
                if len(unattributed) > 1:
                    first["message"] = "; ".join(e["message"] for e in unattributed)[:500]
                first["ids"] = leftover
                errors.append(first)
        return BatchOutcome(results, errors, [i for i in chunk_ids if i in applied])
