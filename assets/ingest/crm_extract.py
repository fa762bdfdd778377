"""Incremental extraction of one CRM object for one day (no Dagster here).

Window: [day start − look-back, day end) on the modification timestamp, walked by the
connector's (modified, id) search that splits windows above the 10,000-result cap.
Deletes: archived records (search never returns them) listed and landed as tombstones.
"""
from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd

from trueup.connectors.hubspot import HubSpotClient

from .objects import CRM_PROPERTIES, SourceObject

DEFAULT_LOOKBACK = dt.timedelta(hours=1)
ASSOCIATION_CHUNK = 1000   # HubSpot's v4 association batch read takes up to 1,000 ids


@dataclass
class CrmExtract:
    rows: pd.DataFrame            # versions modified inside the day
    earlier: pd.DataFrame         # look-back versions, with `_partition` = their own day
    stats: dict = field(default_factory=dict)


class _Records:
    """Rows as the walk returns them, turned into a frame every CHUNK_ROWS rows: a backfill's
    walk over a million deals kept as dicts took ~2.5 GB; as frames (Arrow-backed strings) the
    same rows take a fraction of that."""

    CHUNK_ROWS = 50_000

    def __init__(self, columns: list[str]):
        self.columns, self.frames, self.pending = columns, [], []

    def append(self, row: dict) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self.pending:
            self.frames.append(pd.DataFrame.from_records(self.pending, columns=self.columns))
            self.pending = []

    def frame(self) -> pd.DataFrame:
        self._flush()
        if not self.frames:
            return pd.DataFrame.from_records([], columns=self.columns)
        return self.frames[0] if len(self.frames) == 1 else pd.concat(self.frames, ignore_index=True)


def _ms(t: dt.datetime) -> int:
    return int(t.timestamp() * 1000)


def record_to_row(rec: dict, properties: tuple[str, ...]) -> dict:
    props = rec.get("properties") or {}
    row = {
        "id": str(rec["id"]),
        "created_at": rec.get("createdAt"),
        "updated_at": rec.get("updatedAt"),
        "archived": "true" if rec.get("archived") else "false",
        "archived_at": rec.get("archivedAt"),
    }
    if rec.get("archived") and rec.get("archivedAt"):
        # a deletion is a change of its own: the tombstone sorts after the last live version
        row["updated_at"] = max(row["updated_at"] or "", rec["archivedAt"])
    for p in properties:
        row[p] = props.get(p)
    return row


def _business_day(iso: pd.Series, tz: str) -> pd.Series:
    return pd.to_datetime(iso, utc=True, format="ISO8601").dt.tz_convert(tz).dt.strftime("%Y-%m-%d")


def extract_crm_range(client: HubSpotClient, obj: SourceObject, start: dt.datetime, end: dt.datetime,
                      tz: str, lookback: dt.timedelta = DEFAULT_LOOKBACK) -> CrmExtract:
    """All versions of `obj` modified in [start, end) plus the look-back before `start`.

    A backfill of many days is one extraction (one search walk, one archived listing, one
    association read) split by day afterwards — far fewer requests than a walk per day."""
    props = CRM_PROPERTIES[obj.source_name]
    lo, hi = _ms(start - lookback), _ms(end)
    before = client.stats.snapshot()
    run = client.search_modified(obj.source_name, lo, hi, props)
    records = _Records(list(obj.columns[:5] + props))
    ids: list[str] = []
    links, pending = {}, []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for r in run:
            row = record_to_row(r, props)
            records.append(row)
            ids.append(row["id"])
            # search and association reads draw on separate rate limits: read associations for
            # each 1,000 deals while the search walk goes on, instead of after it
            if obj.source_name == "deals" and len(ids) % ASSOCIATION_CHUNK == 0:
                pending.append(pool.submit(client.read_associations, "deals", "companies",
                                           ids[-ASSOCIATION_CHUNK:]))
        searched = len(ids)
        # deletes: HubSpot lists archived records only through the list endpoint
        for page in client.list_records(obj.source_name, props, archived=True):
            for r in page:
                row = record_to_row(r, props)
                stamp = pd.Timestamp(row["updated_at"]).value // 1_000_000 if row["updated_at"] else None
                if stamp is not None and lo <= stamp < hi:
                    records.append(row)
                    ids.append(row["id"])
        if obj.source_name == "deals":
            done = (searched // ASSOCIATION_CHUNK) * ASSOCIATION_CHUNK
            rest = ids[done:]
            if rest:
                pending.append(pool.submit(client.read_associations, "deals", "companies", rest))
            for f in pending:
                links.update(f.result())
    df = records.frame()
    if obj.source_name == "deals":
        df["company_id"] = [links.get(i) for i in df["id"]]
    df = df.drop_duplicates(subset=["id", "updated_at"], keep="last")
    df["_partition"] = _business_day(df["updated_at"], tz)
    in_range = pd.to_datetime(df["updated_at"], utc=True, format="ISO8601") >= pd.Timestamp(
        start.astimezone(dt.timezone.utc))
    after = client.stats.snapshot()
    stats = {k: after.get(k, 0) - before.get(k, 0) for k in ("requests", "pages", "retries", "records")}
    stats["search"] = run.stats.as_dict() if hasattr(run, "stats") else {}
    return CrmExtract(df[in_range].reset_index(drop=True), df[~in_range].reset_index(drop=True), stats)


def extract_crm_day(client: HubSpotClient, obj: SourceObject, start: dt.datetime, end: dt.datetime,
                    tz: str, lookback: dt.timedelta = DEFAULT_LOOKBACK) -> CrmExtract:
    """One day: the range extraction of a single day, without the partition column."""
    ex = extract_crm_range(client, obj, start, end, tz, lookback)
    return CrmExtract(ex.rows.drop(columns="_partition"), ex.earlier, ex.stats)


def _deal_companies(client: HubSpotClient, deal_ids: list[str]) -> list[str | None]:
    if not deal_ids:
        return []
    links = client.read_associations("deals", "companies", deal_ids)
    return [links.get(i) for i in deal_ids]
