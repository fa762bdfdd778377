"""The CRM connector: limiter, window splitting, error classification (no server needed),
and integration against the sandbox CRM server (faults, caps, 207s, auth)."""
from __future__ import annotations

import bisect
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from trueup.connectors.errors import PermanentError, SyncError, TransientError, classify
from trueup.connectors.hubspot import SEARCH_CAP, BatchOutcome, HubSpotClient, to_epoch_ms
from trueup.connectors.throttle import RollingWindowLimiter, Throttle


# ----------------------------------------------------------------------------- fakes


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.t += s


def max_in_window(times: list[float], window: float) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        best = max(best, i - j + 1)
    return best


# ----------------------------------------------------------------------------- limiter


def test_rolling_window_default_stays_a_little_under_the_limit():
    assert RollingWindowLimiter().limit == 95
    assert RollingWindowLimiter(50).limit == 47
    assert RollingWindowLimiter(100, headroom=1.0).limit == 100


def test_rolling_window_never_exceeds_limit_in_any_window():
    clock = FakeClock()
    lim = RollingWindowLimiter(10, 1.0, headroom=1.0, clock=clock, sleep=clock.sleep)
    sent = []
    for _ in range(35):
        slot, _ = lim.acquire()
        sent.append(clock())
        clock.t += 0.01  # the request takes 10 ms
        lim.release(slot)
    assert max_in_window(sent, 1.0) <= 10
    # 35 requests at 10/s need a bit more than three windows, and not much more
    assert 3.0 <= sent[-1] - sent[0] <= 3.5


def test_rolling_window_counts_a_request_until_its_response_arrived():
    clock = FakeClock()
    lim = RollingWindowLimiter(1, 1.0, headroom=1.0, clock=clock, sleep=clock.sleep)
    slot, _ = lim.acquire()
    clock.t += 0.6  # slow response: the server may have counted it as late as now
    lim.release(slot)
    start = clock()
    lim.acquire()
    assert clock() - start == pytest.approx(1.0)  # 1 s after the response, not after the send


def test_in_flight_slot_never_expires():
    clock = FakeClock()
    lim = RollingWindowLimiter(1, 1.0, headroom=1.0, clock=clock, sleep=clock.sleep)
    slot, _ = lim.acquire()
    clock.t += 5
    assert lim.in_window() == 1  # still in flight
    lim.release(slot)
    clock.t += 1
    assert lim.in_window() == 0


def test_rolling_window_is_thread_safe():
    lim = RollingWindowLimiter(8, 0.4, headroom=1.0)
    sent: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(6):
            slot, _ = lim.acquire()
            with lock:
                sent.append(time.monotonic())
            time.sleep(0.002)
            lim.release(slot)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(sent) == 24
    assert max_in_window(sent, 0.4) <= 8


def test_searches_go_at_once_up_to_the_per_second_limit():
    """A walk's first searches are not spaced: five go at once (HubSpot: 5 per second), and the
    sixth waits until the first has been answered a second ago."""
    clock = FakeClock()
    th = Throttle(100, 10.0, 5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        permit = th.acquire(search=True)
        assert permit.waited == 0.0
        clock.t += 0.01   # answered 10 ms later
        th.release(permit)
    start = clock()
    th.acquire(search=True)
    assert clock() - start == pytest.approx(1.01 - 0.05)   # first answered at 0.01, now is 0.05
    slow = Throttle(100, 10.0, 0.5, clock=clock, sleep=clock.sleep)   # under one per second: one per 2 s
    assert (slow.search.max_requests, slow.search.interval_s) == (1, 2.0)


def counted_by_the_crm(trips: list[tuple[float, float]], concurrency: int, *, search: bool) -> tuple[list[float], Throttle]:
    """When the CRM counts each request (its arrival), for requests sent through a throttle at
    HubSpot's limits as fast as it lets them, `concurrency` in flight, each taking (to the CRM,
    back) from `trips`; a response releases its permit when it arrives."""
    clock = FakeClock()
    in_flight: list[tuple[float, int, object]] = []   # (response time, order, permit)

    def sleep(s: float) -> None:   # time passes: the responses due meanwhile arrive, in order
        until = clock.t + s
        while in_flight and min(in_flight)[0] <= until:
            answered = min(in_flight)
            in_flight.remove(answered)
            clock.t = max(clock.t, answered[0])
            th.release(answered[2])
        clock.t = until

    th = Throttle(100, 10.0, 5, clock=clock, sleep=sleep)
    counted = []
    for i, (to_crm, back) in enumerate(trips):
        while len(in_flight) >= concurrency:   # every connection busy: wait for the first answer
            sleep(max(0.0, min(in_flight)[0] - clock.t))
        permit = th.acquire(search=search)
        counted.append(clock.t + to_crm)
        in_flight.append((clock.t + to_crm + back, i, permit))
    return counted, th


@given(trips=st.lists(st.tuples(st.floats(0.0, 0.6), st.floats(0.0, 0.6)), min_size=20, max_size=120),
       concurrency=st.integers(1, 4))
@settings(max_examples=40, deadline=None)
def test_searches_never_make_the_crm_count_more_than_its_per_second_limit(trips, concurrency):
    """Whatever the latency, the CRM, counting each search when it arrives, never counts more
    than 5 in any second: a search's slot leaves the throttle's one-second window only a second
    after its response."""
    counted, _ = counted_by_the_crm(trips, concurrency, search=True)
    assert max_in_window(counted, 1.0) <= 5


@given(trips=st.lists(st.tuples(st.floats(0.0, 3.0), st.floats(0.0, 3.0)), min_size=120, max_size=360),
       concurrency=st.integers(1, 4))
@settings(max_examples=40, deadline=None)
def test_the_throttle_at_the_whole_limit_never_lets_the_crm_count_more(trips, concurrency):
    """The throttle uses the CRM's whole limit (100 per 10 s) in its own process. Whatever the
    latency to the CRM and back (up to 3 s each way) and however many requests are in flight, the
    CRM, counting each request when it arrives as the sandbox and HubSpot do, never counts more
    than 100 in any ten seconds: a slot leaves the throttle's window only ten seconds after its
    response, which comes after the CRM counted it."""
    counted, th = counted_by_the_crm(trips, concurrency, search=False)
    assert max_in_window(counted, 10.0) <= 100
    assert th.window.limit == 100


def test_throttle_adapts_to_server_headers_and_429_policies():
    clock = FakeClock()
    th = Throttle(100, 10.0, 5, clock=clock, sleep=clock.sleep)
    p = th.acquire()
    th.release(p, {"X-HubSpot-RateLimit-Max": "50", "X-HubSpot-RateLimit-Remaining": "49",
                   "X-HubSpot-RateLimit-Interval-Milliseconds": "2000"})
    # the throttle's own window takes the whole limit (slots re-stamped at the response); the
    # budget shared with other processes keeps the headroom
    assert th.window.max_requests == 50 and th.window.interval_s == 2.0 and th.window.limit == 50
    assert th.shared_limit == 47
    # Remaining 0 → hold new requests until our oldest slot leaves the window
    clock.t += 0.5
    p = th.acquire()
    th.release(p, {"X-HubSpot-RateLimit-Max": "50", "X-HubSpot-RateLimit-Remaining": "0",
                   "X-HubSpot-RateLimit-Interval-Milliseconds": "2000"})
    start = clock()
    th.acquire()
    assert clock() - start == pytest.approx(1.5)
    # SECONDLY 429 holds search for about a second, not the ten-second window
    assert th.penalize("SECONDLY") == 1.0
    start = clock()
    th.acquire(search=True)
    assert clock() - start >= 0.99
    # no headers (search responses) change nothing
    th.observe({})
    assert th.window.max_requests == 50


def test_throttle_search_budget_is_separate_unless_asked():
    clock = FakeClock()
    th = Throttle(100, 10.0, 5, searches_count_in_window=True, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        th.release(th.acquire(search=True))
    assert th.window.in_window() == 3
    th2 = Throttle(100, 10.0, 5, clock=clock, sleep=clock.sleep)
    th2.release(th2.acquire(search=True))
    assert th2.window.in_window() == 0


# ----------------------------------------------------------------------------- errors


def test_classify():
    import requests

    assert classify(TransientError("x")) == "transient"
    assert classify(PermanentError("x")) == "permanent"
    assert classify(SyncError("x", error_class="human_required")) == "human_required"
    assert classify(requests.ReadTimeout()) == "transient"
    assert classify(requests.ConnectionError()) == "transient"
    assert classify(TimeoutError()) == "transient"
    assert classify(RuntimeError("IO Error: Could not set lock on file x.duckdb")) == "transient"
    assert classify(KeyError("amount")) == "permanent"
    with pytest.raises(ValueError):
        SyncError("x", error_class="bogus")


def test_to_epoch_ms():
    assert to_epoch_ms("2024-01-02T03:04:05.678Z") == 1704164645678
    assert to_epoch_ms("1704164645678") == 1704164645678
    assert to_epoch_ms(None) is None


# ----------------------------------------------------------------------------- search splitting (fake API)


class FakeSearchApi:
    """In-memory HubSpot search: GTE/LT/EQ filters on the modification time, GT on
    hs_object_id, one sort, paging capped at 10,000 (a 400 past it)."""

    def __init__(self, records: list[tuple[int, int]], prop: str = "hs_lastmodifieddate"):
        self.keys = sorted((m, i) for i, m in records)  # (modified ms, id)
        self.prop = prop
        self.bodies: list[dict] = []

    def _rows(self, filters: list[dict]) -> list[tuple[int, int]]:
        lo, hi, gt = -(10**18), 10**18, None
        for f in filters:
            x = int(f["value"])
            if f["propertyName"] == "hs_object_id":
                assert f["operator"] == "GT"
                gt = x
            else:
                op = f["operator"]
                if op in ("GTE", "EQ"):
                    lo = max(lo, x)
                if op == "LT":
                    hi = min(hi, x)
                if op == "EQ":
                    hi = min(hi, x + 1)
        if gt is not None and hi == lo + 1:
            a = bisect.bisect_right(self.keys, (lo, gt))
        else:
            a = bisect.bisect_left(self.keys, (lo, -1))
        b = bisect.bisect_left(self.keys, (hi, -1))
        rows = self.keys[a:b]
        if gt is not None:
            rows = [r for r in rows if r[1] > gt]
        return rows

    def __call__(self, method, path, *, object_type, op, params=None, body=None, search=False, write=False):
        assert path.endswith("/search") and search
        self.bodies.append(body)
        sorts = body.get("sorts") or []
        assert len(sorts) <= 1, "HubSpot allows one sort"
        after = int(body.get("after") or 0)
        if after >= SEARCH_CAP:
            raise PermanentError(f"CRM {object_type} search failed: 400 VALIDATION_ERROR — capped", status=400)
        (group,) = body["filterGroups"]
        rows = self._rows(group["filters"])
        if sorts and sorts[0]["propertyName"] == "hs_object_id":
            rows = sorted(rows, key=lambda r: r[1])
        limit = body["limit"]
        page = [(i, m) for m, i in rows[after: after + limit]]
        out = {"total": len(rows),
               "results": [{"id": str(i), "properties": {self.prop: str(m), "hs_object_id": str(i)}} for i, m in page]}
        if after + limit < len(rows):
            out["paging"] = {"next": {"after": str(after + limit)}}
        return 200, out


def _fake_client(records):
    client = HubSpotClient("https://fake", "tok", searches_per_second=1e6, requests_per_10s=10**9)
    api = FakeSearchApi(records)
    client._request = api  # type: ignore[method-assign]
    return client, api


def test_search_splits_windows_and_walks_a_hot_millisecond_by_keyset():
    hot = 5_000_000
    records = [(i, hot) for i in range(1, 25_001)]  # 25,000 stamped in one ms (bulk update)
    nid = 30_000
    for ms in list(range(1_000_000, 4_999_000, 500)) + list(range(5_000_001, 9_000_000, 450)):
        records.append((nid, ms))
        nid += 1
    records.append((nid, hot - 1))
    records.append((nid + 1, hot + 1))
    client, api = _fake_client(records)
    run = client.search_modified("deals", 0, 10_000_000, ["dealname"])
    got = [r["id"] for r in run]
    assert len(got) == len(set(got)) == len(records)
    assert set(got) == {str(i) for i, _ in records}
    st = run.stats
    assert st.finished and st.total == len(records) and st.records == len(records)
    assert st.keyset_walks >= 1 and st.splits >= 1 and st.max_offset < SEARCH_CAP
    assert client.last_search_stats is st
    assert all(len(b.get("sorts") or []) <= 1 for b in api.bodies)
    keyset = [b for b in api.bodies if (b.get("sorts") or [{}])[0].get("propertyName") == "hs_object_id"]
    assert len(keyset) >= 25_000 // 200
    assert {w.mode for w in st.windows} >= {"split", "paged", "keyset"}


def test_search_window_under_cap_pages_sorted_by_modification_time_its_first_page_the_count():
    records = [(i, 1000 + i) for i in range(1, 451)]
    client, api = _fake_client(records)
    run = client.search_modified("contacts", 0, 10_000, ["email"])
    got = list(run)
    assert len(got) == 450
    # no count query first: the first page's total is the count (HubSpot allows 5 searches a second)
    assert run.stats.total == 450 and run.stats.count_queries == 0 and run.stats.queries == 3
    pages = api.bodies
    assert len(pages) == 3 and all(b["limit"] == 200 for b in pages)
    assert pages[0]["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    filters = pages[0]["filterGroups"][0]["filters"]
    assert {(f["operator"], f["value"]) for f in filters} == {("GTE", "0"), ("LT", "10000")}


def test_search_respects_half_open_window_and_empty_windows():
    records = [(1, 99), (2, 100), (3, 199), (4, 200)]
    client, _ = _fake_client(records)
    assert sorted(r["id"] for r in client.search_modified("deals", 100, 200, [])) == ["2", "3"]
    assert list(client.search_modified("deals", 500, 600, [])) == []
    assert list(client.search_modified("deals", 600, 600, [])) == []


def test_batch_outcome_maps_207_errors_to_input_ids():
    client = HubSpotClient("https://fake", "tok")
    chunk = [{"id": "A"}, {"id": "B"}, {"id": "C"}]
    data = {"results": [{"id": "11", "properties": {"erp_order_number": "A"}}],
            "errors": [{"category": "VALIDATION_ERROR", "message": "bad amount", "context": {"ids": ["B"]}},
                       {"category": "VALIDATION_ERROR", "message": "mystery"}]}
    out = client._map_outcome(chunk, data, lambda r: r["properties"].get("erp_order_number"))
    assert isinstance(out, BatchOutcome)
    assert [r["id"] for r in out.results] == ["11"]
    assert out.errors == [{"ids": ["B"], "message": "bad amount", "category": "VALIDATION_ERROR"},
                          {"ids": ["C"], "message": "mystery", "category": "VALIDATION_ERROR"}]
    assert out.error_ids == {"B", "C"} and out.applied_ids == ["A"]


def test_client_repr_and_messages_never_show_the_token():
    client = HubSpotClient("https://fake", "sekrit-token-123")
    assert "sekrit" not in repr(client)
    assert client._scrub("oops sekrit-token-123 leaked") == "oops *** leaked"


# ----------------------------------------------------------------------------- retries (scripted transport)


def _resp(status, body=b"{}", headers=None):
    import requests

    r = requests.Response()
    r.status_code = status
    r._content = body if isinstance(body, bytes) else __import__("json").dumps(body).encode()
    r.headers.update(headers or {})
    return r


class ScriptedSession:
    """Stands in for requests.Session: answers from a script (responses or exceptions)."""

    def __init__(self, script):
        self.script = list(script)
        self.calls = 0

    def request(self, method, url, **kw):
        self.calls += 1
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self):
        pass


def _scripted(script, **kw):
    clock = FakeClock()
    th = Throttle(100, 10.0, 5, clock=clock, sleep=clock.sleep)
    client = HubSpotClient("https://fake", "tok", throttle=th, sleep=clock.sleep, rng_seed=0, **kw)
    client._session = ScriptedSession(script)
    return client, clock


OK_SEARCH = {"total": 0, "results": []}
RL_HEADERS = {"X-HubSpot-RateLimit-Max": "100", "X-HubSpot-RateLimit-Remaining": "0",
              "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}


def test_transient_failures_are_retried_with_backoff():
    import requests

    client, clock = _scripted([
        _resp(503, b"<html>503</html>"), requests.ReadTimeout("slow"), requests.ConnectionError("reset"),
        _resp(200, b'{"results": [{"id": "1"'), _resp(502), _resp(200, {"results": [{"id": "1"}]}),
    ])
    pages = list(client.list_records("deals", ["dealname"]))
    assert pages == [[{"id": "1"}]]
    st = client.stats.snapshot()
    assert (st["requests"], st["retries"], st["responses_5xx"], st["timeouts"], st["dropped"], st["malformed"]) == \
        (6, 5, 2, 1, 1, 1)
    assert 0 < st["sleep_seconds"] <= 0.5 * (1 + 2 + 4 + 8 + 16)  # full jitter under the exponential cap


def test_429_policies_are_honoured():
    ten = {"status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}
    sec = {"status": "error", "errorType": "RATE_LIMIT", "policyName": "SECONDLY"}
    client, clock = _scripted([_resp(429, ten, RL_HEADERS), _resp(200, {"results": []})])
    t0 = clock()
    list(client.list_records("deals", []))
    assert clock() - t0 >= 9.9  # waited for the rolling window
    assert client.stats.responses_429 == {"TEN_SECONDLY_ROLLING": 1}

    client, clock = _scripted([_resp(429, sec), _resp(200, OK_SEARCH), _resp(200, OK_SEARCH)])
    t0 = clock()
    list(client.search_modified("deals", 0, 10, []))
    assert 0.99 <= clock() - t0 < 3  # about a second, not the ten-second window
    assert client.stats.responses_429 == {"SECONDLY": 1}


def test_retries_are_bounded():
    client, _ = _scripted([_resp(504)] * 4, max_retries=3)
    with pytest.raises(TransientError) as ei:
        list(client.list_records("deals", []))
    assert str(ei.value).startswith("CRM deals list failed after 4 attempts: 504")
    assert not ei.value.outcome_unknown and client._session.calls == 4


@pytest.mark.parametrize("status,category", [(400, "VALIDATION_ERROR"), (401, "INVALID_AUTHENTICATION"),
                                             (403, "MISSING_SCOPES"), (404, "OBJECT_NOT_FOUND")])
def test_permanent_statuses_are_never_retried(status, category):
    client, _ = _scripted([_resp(status, {"status": "error", "category": category, "message": "nope tok"})])
    with pytest.raises(PermanentError) as ei:
        client.batch_read("deals", ["1"], [])
    assert ei.value.status == status and client._session.calls == 1
    msg = str(ei.value)
    assert msg.startswith(f"CRM deals batch read failed: {status} {category} — ") and "\n" not in msg
    assert " tok" not in msg  # the token never shows, even if the server echoes it


def test_write_timeout_or_unreadable_answer_is_outcome_unknown_but_connect_failure_is_retried():
    import requests
    import urllib3.exceptions as u3

    inputs = [{"id": "SO-1", "properties": {"amount": "1"}}]
    for failure in (requests.ReadTimeout("slow"), requests.ConnectionError("reset by peer"),
                    _resp(200, b'{"status": "COMPL')):
        client, _ = _scripted([failure])
        with pytest.raises(TransientError) as ei:
            client.batch_upsert("deals", "erp_order_number", inputs)
        assert ei.value.outcome_unknown and ei.value.unknown_ids == ["SO-1"]
        assert client._session.calls == 1
    refused = requests.ConnectionError(u3.MaxRetryError(None, "/", u3.NewConnectionError(None, "refused")))
    ok = {"status": "COMPLETE", "results": [{"id": "7", "properties": {"erp_order_number": "SO-1"}}]}
    client, _ = _scripted([refused, requests.ConnectTimeout("syn"), _resp(503), _resp(200, ok)])
    out = client.batch_upsert("deals", "erp_order_number", inputs)
    assert out.applied_ids == ["SO-1"] and client._session.calls == 4


# ============================================================================= integration (sandbox CRM)

crm_server = pytest.importorskip("trueup.sandbox.crm.server")
crm_store = pytest.importorskip("trueup.sandbox.crm.store")

TOKEN = "test-" + "".join(__import__("secrets").token_hex(8))
H = 1_600_000_000_000  # the bulk-update millisecond (2020-09-13; API writes stamp "now", far away)
DAY = 86_400_000
N_HOT = 25_000
COMPANY_PROPS = ["name", "domain", "country", "erp_customer_number", "ar_balance"]
DEAL_PROPS = ["dealname", "amount", "dealstage", "erp_order_number"]


@pytest.fixture(scope="module")
def crm_db(tmp_path_factory):
    """A seeded sandbox CRM database shared by the integration tests of this module."""
    import numpy as np
    import pandas as pd

    path = tmp_path_factory.mktemp("crm") / "crm.sqlite"
    rng = np.random.default_rng(20260901)
    n_other = 1_200
    hot_ids = np.arange(1, N_HOT + 1)
    other_ids = np.arange(100_001, 100_001 + n_other)
    other_ms = rng.integers(H - DAY, H + DAY, n_other)
    other_ms[:4] = [H - 1, H + 1, H - DAY, H + DAY]  # neighbours of the hot ms and both edges
    edge_ids = np.array([200_001, 200_002])  # just outside the window
    edge_ms = np.array([H - DAY - 1, H + DAY + 5])
    ids = np.concatenate([hot_ids, other_ids, edge_ids])
    upd = np.concatenate([np.full(N_HOT, H), other_ms, edge_ms])
    archived = np.zeros(len(ids), dtype=bool)
    archived[[10, 20, N_HOT + 10, N_HOT + 11]] = True  # deleted records never appear in search
    deals = pd.DataFrame({
        "id": ids, "created_ms": upd - DAY, "updated_ms": upd, "archived": archived,
        "dealname": [f"Deal {i}" for i in ids], "amount": [f"{(i % 977) * 10.5:.2f}" for i in ids],
        "dealstage": "appointmentscheduled", "company_id": (ids % 250) + 1,
    })
    companies = pd.DataFrame({
        "id": np.arange(1, 251), "created_ms": H - 5 * DAY, "updated_ms": H - 4 * DAY, "archived": False,
        "name": [f"Company {i}" for i in range(1, 251)], "domain": [f"c{i}.example" for i in range(1, 251)],
        "country": "DE", "erp_customer_number": [f"C-{i:05d}" for i in range(1, 251)],
        "ar_balance": [f"{i * 100}" for i in range(1, 251)],
    })
    contacts = pd.DataFrame({
        "id": np.arange(1, 31), "created_ms": H - DAY, "updated_ms": H - DAY, "archived": False,
        "email": [f"p{i}@c.example" for i in range(1, 31)], "company_id": np.arange(1, 31),
    })
    store = crm_store.CrmStore(path)
    store.load_records("deals", deals)
    store.load_records("companies", companies)
    store.load_records("contacts", contacts)
    store.close()
    return path


@pytest.fixture
def crm(crm_db):
    """Start a fresh sandbox server (own rate limiter, knobs and stats) over the seeded db."""
    servers = []

    def start(**knobs):
        srv = crm_server.start_in_thread(crm_db, TOKEN, knobs=knobs or None)
        servers.append(srv)
        return srv

    yield start
    for srv in servers:
        srv.stop()


def _truth(crm_db, object_type, archived=False):
    store = crm_store.CrmStore(crm_db)
    try:
        return store.all_records(object_type, archived=archived)
    finally:
        store.close()


def _server_stats(srv, settle_s: float = 1.0) -> dict:
    """The sandbox counts some answers (401, 429) just after sending them: let it settle."""
    deadline = time.monotonic() + settle_s
    last = srv.stats()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = srv.stats()
        if now["requests_total"] == last["requests_total"]:
            return now
        last = now
    return last


def _client(srv, **kw):
    kw.setdefault("rng_seed", 1)
    return HubSpotClient(srv.base_url, TOKEN, **kw)


def test_extracts_window_with_25000_records_in_one_millisecond(crm, crm_db):
    srv = crm(search_per_second=50)
    client = _client(srv, searches_per_second=50)
    run = client.search_modified("deals", H - DAY, H + DAY, DEAL_PROPS)
    got = [r["id"] for r in run]

    df = _truth(crm_db, "deals", archived=False)
    want = set(df.loc[(df.updated_ms >= H - DAY) & (df.updated_ms < H + DAY), "id"].astype(str))
    assert len(want) > N_HOT
    assert len(got) == len(set(got)), "a record was yielded twice"
    assert set(got) == want, "records missed or extra"
    st = run.stats
    assert st.finished and st.records == len(want) and st.keyset_walks >= 1
    assert st.max_offset < SEARCH_CAP
    server = srv.stats()
    assert "400" not in server["requests_by_status"], server["requests_by_status"]
    assert client.stats.retries == 0
    print(f"\n25k-in-1ms window: {len(got)} records, {st.queries} searches "
          f"({st.count_queries} counts, {st.splits} splits, {st.keyset_walks} keyset walks)")


def _ledger_write(write, inputs, read_back):
    """What the platform's write ledger does: send, and resolve an unknown outcome by
    reading the target back (confirm what landed, resend only what did not)."""
    pending = {i["id"]: i for i in inputs}
    confirmed: set[str] = set()
    readbacks = 0
    for _ in range(20):
        if not pending:
            break
        try:
            out = write(list(pending.values()))
        except TransientError as exc:
            out = exc.outcome
            if exc.outcome_unknown:
                readbacks += 1
                for key in read_back([k for k in exc.unknown_ids if k in pending], pending):
                    confirmed.add(key)
                    pending.pop(key)
        assert out.errors == []
        for key in out.applied_ids:
            confirmed.add(key)
            pending.pop(key, None)
    assert not pending
    return confirmed, readbacks


def test_sync_is_complete_and_correct_with_faults_on(crm, crm_db):
    srv = crm(error_rate_5xx=0.2, drop_rate=0.05, malformed_rate=0.05, latency_ms=5,
              rate_limit_10s=60, search_per_second=3, seed=11)
    client = _client(srv, requests_per_10s=60, searches_per_second=3, max_retries=10,
                     backoff_base=0.02, backoff_cap=0.5)

    # full list of companies
    listed = {r["id"]: r["properties"] for page in client.list_records("companies", COMPANY_PROPS) for r in page}
    companies = _truth(crm_db, "companies")
    assert set(listed) == set(companies.id.astype(str))
    for row in companies.itertuples():
        p = listed[str(row.id)]
        assert (p["name"], p["erp_customer_number"], p["ar_balance"]) == (row.name, row.erp_customer_number,
                                                                           row.ar_balance)

    # a day of deals by search, in consecutive windows like an incremental sync
    deals = _truth(crm_db, "deals", archived=False)
    edges = [H - DAY + k * DAY // 6 for k in range(6)] + [H]
    found: dict[str, dict] = {}
    for lo, hi in zip(edges, edges[1:]):
        for r in client.search_modified("deals", lo, hi, DEAL_PROPS):
            assert r["id"] not in found
            found[r["id"]] = r
    want = deals[(deals.updated_ms >= H - DAY) & (deals.updated_ms < H)]
    assert set(found) == set(want.id.astype(str))
    assert all(found[str(r.id)]["properties"]["amount"] == r.amount for r in want.itertuples())

    # batch read
    ids = [str(i) for i in deals.id.iloc[::26][:1000]]
    read = client.batch_read("deals", ids, ["amount"])
    truth_amount = dict(zip(deals.id.astype(str), deals.amount))
    assert sorted(r["id"] for r in read) == sorted(ids)
    assert all(r["properties"]["amount"] == truth_amount[r["id"]] for r in read)

    # writes: upsert 500 new deals, then update them, through the ledger
    inputs = [{"id": f"SO-F{i:04d}", "properties": {"dealname": f"Fault {i}", "amount": str(i)}}
              for i in range(500)]

    def upsert_back(keys, pending):
        back = client.batch_read("deals", keys, ["amount"], id_property="erp_order_number")
        return [r["properties"]["erp_order_number"] for r in back
                if r["properties"]["amount"] == pending[r["properties"]["erp_order_number"]]["properties"]["amount"]]

    confirmed, rb1 = _ledger_write(lambda xs: client.batch_upsert("deals", "erp_order_number", xs),
                                   inputs, upsert_back)
    assert len(confirmed) == 500
    by_key = {r["properties"]["erp_order_number"]: r["id"] for r in
              client.batch_read("deals", [i["id"] for i in inputs], ["amount"], id_property="erp_order_number")}
    updates = [{"id": rid, "properties": {"dealstage": "closedwon"}} for rid in by_key.values()]

    def update_back(keys, pending):
        return [r["id"] for r in client.batch_read("deals", keys, ["dealstage"])
                if r["properties"]["dealstage"] == "closedwon"]

    confirmed, rb2 = _ledger_write(lambda xs: client.batch_update("deals", xs), updates, update_back)
    assert len(confirmed) == 500

    st = client.stats.snapshot()
    assert st["retries"] > 0 and st["responses_5xx"] > 0
    after = _truth(crm_db, "deals")
    written = after[after.erp_order_number.fillna("").str.startswith("SO-F")]
    assert len(written) == 500 and written.erp_order_number.is_unique
    assert (written.dealstage == "closedwon").all()
    assert sorted(written.amount.astype(int)) == list(range(500))
    print(f"\nfaults: {st['requests']} requests, {st['retries']} retries, 5xx {st['responses_5xx']}, "
          f"dropped {st['dropped']}, malformed {st['malformed']}, 429 {st['responses_429']}, "
          f"unknown outcomes {st['outcome_unknown']} (ledger read-backs {rb1 + rb2})")


def test_wrong_token_fails_fast_with_one_clear_message(crm):
    srv = crm()
    client = HubSpotClient(srv.base_url, "wrong-token-xyz", backoff_base=1.0)
    t0 = time.monotonic()
    with pytest.raises(PermanentError) as ei:
        next(iter(client.search_modified("deals", H - DAY, H, DEAL_PROPS)))
    assert time.monotonic() - t0 < 2
    assert str(ei.value) == "CRM deals search failed: 401 INVALID_AUTHENTICATION — check TRUEUP_CRM_TOKEN"
    assert "wrong-token-xyz" not in str(ei.value) and "\n" not in str(ei.value)
    assert classify(ei.value) == "permanent"
    assert client.stats.requests == 1 and client.stats.retries == 0
    assert _server_stats(srv)["requests_by_status"] == {"401": 1}


def test_400_is_not_retried(crm):
    srv = crm()
    client = _client(srv)
    with pytest.raises(PermanentError) as ei:
        list(client.search_modified("deals", H - DAY, H, DEAL_PROPS, modified_property="no_such_property"))
    assert ei.value.status == 400 and str(ei.value).startswith("CRM deals search failed: 400 VALIDATION_ERROR — ")
    assert client.stats.requests == 1 and client.stats.retries == 0
    # a whole-batch 400 (upsert by a non-unique property) raises too, with nothing applied
    with pytest.raises(PermanentError) as ei:
        client.batch_upsert("deals", "dealname", [{"id": "x", "properties": {"amount": "1"}}])
    assert ei.value.status == 400 and ei.value.outcome.results == []
    assert srv.stats()["requests_by_status"] == {"400": 2}


def test_207_maps_errors_to_input_ids(crm):
    srv = crm()
    client = _client(srv)
    out = client.batch_upsert("companies", "erp_customer_number", [
        {"id": "C-90001", "properties": {"name": "Ok one", "ar_balance": "10"}},
        {"id": "C-90002", "properties": {"name": "Bad number", "ar_balance": "ten"}},
        {"id": "C-90003", "properties": {"name": "Unknown prop", "no_such_prop": "x"}},
        {"id": "C-90004", "properties": {"name": "Ok two"}},
    ])
    assert isinstance(out, BatchOutcome)
    assert sorted(r["properties"]["erp_customer_number"] for r in out.results) == ["C-90001", "C-90004"]
    assert out.error_ids == {"C-90002", "C-90003"} and out.applied_ids == ["C-90001", "C-90004"]
    by_id = {e["ids"][0]: e for e in out.errors}
    assert all(len(e["ids"]) == 1 and e["category"] == "VALIDATION_ERROR" for e in out.errors)
    assert "ten" in by_id["C-90002"]["message"] and "no_such_prop" in by_id["C-90003"]["message"]

    ok_id = out.results[0]["id"]
    upd = client.batch_update("companies", [{"id": ok_id, "properties": {"country": "FR"}},
                                            {"id": "987654321", "properties": {"country": "FR"}}])
    assert [r["id"] for r in upd.results] == [ok_id]
    assert [e["ids"] for e in upd.errors] == [["987654321"]]
    assert client.stats.retries == 0


def test_write_with_unknown_outcome_is_not_resent(crm):
    srv = crm(drop_rate=1.0, seed=3)
    client = _client(srv, backoff_base=0.01)
    with pytest.raises(TransientError) as ei:
        client.batch_upsert("companies", "erp_customer_number",
                            [{"id": "C-95001", "properties": {"name": "Dropped but applied"}}])
    exc = ei.value
    assert exc.outcome_unknown and exc.unknown_ids == ["C-95001"] and classify(exc) == "transient"
    assert client.stats.requests == 1 and client.stats.retries == 0  # sent exactly once
    srv.set_knobs(drop_rate=0)
    back = client.batch_read("companies", ["C-95001", "C-NOPE"], ["name"], id_property="erp_customer_number")
    assert [r["properties"]["name"] for r in back] == ["Dropped but applied"]


def test_archived_and_associations(crm, crm_db):
    srv = crm()
    client = _client(srv)
    archived = [r["id"] for page in client.list_records("deals", ["dealname"], archived=True) for r in page]
    want = _truth(crm_db, "deals", archived=True)
    assert sorted(archived) == sorted(want.id.astype(str))
    contacts = [r for page in client.list_records("contacts", ["email"], associations=["companies"]) for r in page]
    assert len(contacts) == 30
    assert all(r["associations"]["companies"]["results"][0]["id"] == r["id"] for r in contacts)
    links = client.read_associations("deals", "companies", ["1", "2", "100001", "999999999"])
    assert links == {"1": "2", "2": "3", "100001": str(100001 % 250 + 1)}


def test_throttle_keeps_429s_under_one_percent(crm, crm_db):
    srv = crm(rate_limit_10s=50)
    client = _client(srv, max_concurrency=4)  # configured for 100/10 s: adapts to the server's 50
    deals = _truth(crm_db, "deals", archived=False)
    ids = [str(i) for i in deals.id.iloc[:94 * 100]]
    t0 = time.monotonic()
    read = client.batch_read("deals", ids, ["amount"])
    elapsed = time.monotonic() - t0
    assert len(read) == len(ids)
    st = client.stats.snapshot()
    server = _server_stats(srv)
    share = st["responses_429_total"] / st["requests"]
    assert st["requests"] >= 94 and share < 0.01
    assert server["rate_limited_by_policy"].get("TEN_SECONDLY_ROLLING", 0) / server["requests_total"] < 0.01
    assert elapsed >= 9.0  # it really was held to ~47 per ten seconds
    print(f"\nthrottle: {st['requests']} requests in {elapsed:.1f}s, 429s {st['responses_429_total']} "
          f"({share:.1%}), throttle wait {st['throttle_wait_seconds']:.1f}s")
