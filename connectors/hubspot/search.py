"""Searching records by modification time past HubSpot's 10,000-result cap.

A query can page at most :data:`SEARCH_CAP` results, so :meth:`ModifiedSearch.search_modified`
reads a time window's count from its first page (or a count query, for the halves of a split),
splits it in halves while it holds more than that, and walks a single millisecond that still
holds more (bulk updates) by ``hs_object_id`` keyset.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterator, Sequence

from trueup.connectors.errors import SyncError
from trueup.connectors.hubspot.limits import SEARCH_CAP, SEARCH_PAGE
from trueup.connectors.hubspot.timestamps import to_epoch_ms
from trueup.connectors.hubspot.transport import CrmTransport


def default_modified_property(object_type: str) -> str:
    """Contacts call it ``lastmodifieddate``; everything else ``hs_lastmodifieddate``."""
    return "lastmodifieddate" if object_type == "contacts" else "hs_lastmodifieddate"


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


class ModifiedSearch(CrmTransport):
    """The search walk: counted windows, split at the cap, keyset through a crowded millisecond."""

    last_search_stats: SearchStats | None

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

        # (lo, hi, total, estimated) — a stack processed so windows come out in time order. The
        # whole range is not counted first: its first page's total is the count (a night's walk
        # is then one search, not two: HubSpot allows five a second), and a range over the cap
        # is split from there, with as many searches as a count would have cost.
        stack: list[tuple[int, int, int, bool]] = [(lo0, hi0, 0, True)]
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
                    if stats.total is None:   # the first page of the whole range
                        stats.total = real
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
                if stats.total is None:   # the whole range is this millisecond
                    stats.total = window.total
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
