"""Independent counts behind the ROI marts' operational columns (issue 17), from the sources, the
generator's defect manifest and the Dagster instance — never from the tables the marts read
(quality.gate_results, quality.quarantine, raw's version log, ops.sync_runs).

What each mart column is recomputed from:

- rows offered per (business day, object): what the source offered for that day when the last run
  covering it ran. `SourceLog.snapshot(days)` is called right before each run and reads, per day of
  the run's range, windowed the way the ingest windows them (assets/ingest/): CRM records by
  modification time in the business time zone (the sandbox store, one current version per record;
  an archived record's modification is its archive time), ERP tables by `updated_at`, ERP exports
  by file day (every row of `exports/<day>/{invoices,payments}.csv` whose manifest is present; within
  a file, one version per key and day — the latest `updated_at`, identical copies all kept, as the
  gate batches them). A later snapshot of a day replaces the earlier one.
- rows bad per (day, object): offered rows that the manifest (`trueup.sandbox.generator.world.read_defects`)
  says fail an inbound contract — deals with a negative amount or a non-ISO currency (every live
  version), closed-won deals without amount or company (their closed-won versions), contacts with a
  malformed email or a non-existent company, a contact re-keyed with another's email (when both are
  in the same day's batch: the contract's uniqueness is per batch, and both rows fail), and the
  export's orphan payment. Tombstones (archived records) are deletions, never bad.
- distinct source records / distinct bad records per window: distinct (object, key) over the
  offered / bad rows of the window's days.
- first-attempt success per (step, partition): from the Dagster instance's event log. A unit is a
  (sync step, partition) the first time a run started that step for that partition (sync steps:
  ingest, gate, publish and reconciliation — the steps that move data, not dbt); it succeeded at
  the first attempt when that run's step was neither retried nor failed and materialized the
  partition.

Platform imports: none. Only the sandbox (its CRM sqlite file layout and the generator's defect
manifest) and Dagster's own instance API.
"""
from __future__ import annotations

import csv
import datetime as dt
import json
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import sqlalchemy as sa

#: objects by source system, with their business key (the source's own names)
CRM_TYPES = {"crm_companies": "companies", "crm_contacts": "contacts", "crm_deals": "deals"}
ERP_TABLES = {"erp_customers": ("customers", "customer_number"), "erp_sales_orders": ("sales_orders", "order_number")}
ERP_FILES = {"erp_invoices": ("invoices.csv", "invoice_number"), "erp_payments": ("payments.csv", "payment_id")}
OBJECTS = (*CRM_TYPES, *ERP_TABLES, *ERP_FILES)

#: manifest defect kinds that an inbound contract rejects, by the object they live in
ALWAYS_BAD = {"negative_amount": "crm_deals", "unknown_currency": "crm_deals", "malformed_email": "crm_contacts",
              "orphan_contact": "crm_contacts", "orphan_payment": "erp_payments"}
BAD_WHEN_WON = {"missing_amount": "crm_deals", "missing_company": "crm_deals"}
DUPLICATE = {"duplicate_contact": "crm_contacts"}

#: Dagster steps that move data (ingest, gate, publish, reconcile): the units of first-attempt success
SYNC_STEP_PREFIXES = ("raw__", "validated__", "publish__", "recon__")
SYNC_STEPS = ("erp_exports",)


@dataclass
class DayRows:
    """What one object's source offered for one business day: keys (one per row the gate sees)
    and the keys of the rows the manifest says are bad."""

    keys: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


class SourceLog:
    """Per (business day, object), the rows the sources offered for that day at the last snapshot
    taken before a run covering it."""

    def __init__(self, sandbox_root: Path, erp_url: str, landing_dir: Path, tz: str = "UTC"):
        self.root, self.erp_url, self.landing = Path(sandbox_root), erp_url, Path(landing_dir)
        self.tz = ZoneInfo(tz)
        self.days: dict[str, dict[str, DayRows]] = {}

    # -- snapshots --------------------------------------------------------------------
    def snapshot(self, days: list[dt.date]) -> None:
        defects = self._defects()
        crm = {obj: self._crm(t) for obj, t in CRM_TYPES.items()}
        erp = {obj: self._erp(table, key) for obj, (table, key) in ERP_TABLES.items()}
        for day in days:
            lo, hi = self._window(day)
            out: dict[str, DayRows] = {}
            for obj, df in {**crm, **erp}.items():
                rows = df[(df["_mod"] >= lo) & (df["_mod"] < hi)]
                out[obj] = DayRows(rows["_key"].tolist(), self._bad(obj, rows, defects))
            for obj, (name, key) in ERP_FILES.items():
                rows = self._export(day, name, key)
                out[obj] = DayRows(rows["_key"].tolist(), self._bad(obj, rows, defects))
            self.days[day.isoformat()] = out

    def _window(self, day: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
        start = dt.datetime.combine(day, dt.time.min, tzinfo=self.tz)
        return pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(start + dt.timedelta(days=1)).tz_convert("UTC")

    def _defects(self) -> dict[str, dict]:
        f = self.root / "defects.json"
        defects = json.loads(f.read_text())["defects"] if f.exists() else []
        out: dict[str, dict] = {"always": defaultdict(set), "won": defaultdict(set), "dup": defaultdict(dict)}
        for d in defects:
            k = d["kind"]
            if k in ALWAYS_BAD:
                out["always"][ALWAYS_BAD[k]].add(str(d["business_key"]))
            elif k in BAD_WHEN_WON:
                out["won"][BAD_WHEN_WON[k]].add(str(d["business_key"]))
            elif k in DUPLICATE:
                out["dup"][DUPLICATE[k]][str(d["business_key"])] = str(d["details"]["duplicate_of"])
        return out

    def _crm(self, object_type: str) -> pd.DataFrame:
        con = sqlite3.connect(f"file:{self.root / 'crm.sqlite'}?mode=ro", uri=True)
        try:
            rows = con.execute(
                "SELECT r.id, r.updated_ms, r.archived_ms, r.archived, json_extract(r.props, '$.dealstage'), "
                "a.company_id FROM records r LEFT JOIN associations a ON a.type = r.type AND a.id = r.id "
                "WHERE r.type = ?", (object_type,)).fetchall()
        finally:
            con.close()
        df = pd.DataFrame(rows, columns=["_key", "updated_ms", "archived_ms", "archived", "dealstage", "company_id"])
        # the ingest: search by modification time (live) + archived records by max(updatedAt, archivedAt)
        mod = df[["updated_ms", "archived_ms"]].fillna(0).max(axis=1).where(df["archived"] == 1, df["updated_ms"])
        df["_mod"] = pd.to_datetime(mod.astype("int64"), unit="ms", utc=True)
        df["_key"] = df["_key"].astype(str)
        df["_live"] = df["archived"] != 1
        df["_won"] = df["dealstage"] == "closedwon"
        return df

    def _erp(self, table: str, key: str) -> pd.DataFrame:
        engine = sa.create_engine(self.erp_url)
        try:
            with engine.connect() as conn:
                df = pd.read_sql(sa.text(f"SELECT {key} AS _key, updated_at FROM {table}"), conn)
        finally:
            engine.dispose()
        df["_mod"] = pd.to_datetime(df["updated_at"], utc=True, format="ISO8601")
        df["_key"] = df["_key"].astype(str)
        df["_live"], df["_won"] = True, False
        return df

    def _export(self, day: dt.date, name: str, key: str) -> pd.DataFrame:
        folder = self.landing / "exports" / day.isoformat()
        cols = ["_key", "updated_at", "_live", "_won"]
        if not (folder / "manifest.json").exists() or not (folder / name).exists():
            return pd.DataFrame(columns=cols)
        with open(folder / name, newline="") as fh:
            rows = list(csv.DictReader(fh))
        df = pd.DataFrame({"_key": [r.get(key) or "" for r in rows], "updated_at": [r.get("updated_at") for r in rows]})
        if len(df):
            # one version per key and day: the latest modification (copies of it all stay)
            latest = df.groupby("_key")["updated_at"].transform("max")
            df = df[df["updated_at"] == latest]
        df["_live"], df["_won"] = True, False
        return df[cols].reset_index(drop=True)

    @staticmethod
    def _bad(obj: str, rows: pd.DataFrame, defects: dict) -> list[str]:
        live = rows[rows["_live"].astype(bool)]
        bad = live["_key"].isin(defects["always"].get(obj, set()))
        bad |= live["_key"].isin(defects["won"].get(obj, set())) & live["_won"].astype(bool)
        pairs = defects["dup"].get(obj, {})
        if pairs:
            present = set(live["_key"])
            twins = {k for k, other in pairs.items() if other in present} | \
                    {other for k, other in pairs.items() if k in present}
            bad |= live["_key"].isin(twins & present)
        return live.loc[bad, "_key"].tolist()

    def save(self, path: Path) -> None:
        """The snapshots as JSON (to look into a disagreement after the test)."""
        Path(path).write_text(json.dumps({d: {o: [r.keys, r.bad] for o, r in objs.items()}
                                          for d, objs in self.days.items()}))

    def load(self, path: Path) -> "SourceLog":
        self.days = {d: {o: DayRows(*v) for o, v in objs.items()} for d, objs in json.loads(Path(path).read_text()).items()}
        return self

    # -- counts ---------------------------------------------------------------------------
    def rows(self, day: str) -> tuple[int, int]:
        """(rows offered, rows bad) over every object, for one business day."""
        objs = self.days.get(day, {})
        return sum(len(r.keys) for r in objs.values()), sum(len(r.bad) for r in objs.values())

    def rows_by_object(self, day: str) -> dict[str, tuple[int, int]]:
        return {o: (len(r.keys), len(r.bad)) for o, r in self.days.get(day, {}).items()}

    def records(self, first: dt.date, last: dt.date) -> tuple[int, int]:
        """(distinct source records, distinct bad records) of the days first..last."""
        seen, bad = set(), set()
        for day, objs in self.days.items():
            if first.isoformat() <= day <= last.isoformat():
                for o, r in objs.items():
                    seen.update((o, k) for k in r.keys)
                    bad.update((o, k) for k in r.bad)
        return len(seen), len(bad)

    def clock(self) -> dt.date:
        """The business clock: the latest day whose deals the CRM offered."""
        return max(dt.date.fromisoformat(d) for d, objs in self.days.items() if objs["crm_deals"].keys)

    def first_day(self) -> dt.date:
        return min(dt.date.fromisoformat(d) for d, objs in self.days.items() if objs["crm_deals"].keys)


def periods(log: SourceLog, golive: dt.date) -> dict[str, tuple[dt.date, dt.date]]:
    """current = go-live .. the business clock; baseline = as many days just before go-live."""
    clock = log.clock()
    n = (clock - golive).days + 1
    return {"baseline": (max(log.first_day(), golive - dt.timedelta(days=n)), golive - dt.timedelta(days=1)),
            "current": (golive, clock)}


# -- first-attempt success from the Dagster instance -----------------------------------------
def first_attempts(instance) -> dict[tuple[str, str], bool]:
    """{(sync step, partition): succeeded at its first attempt}, over every run of the instance, the
    earliest run that started the step for a partition deciding."""
    from dagster import DagsterEventType, RunsFilter

    runs = sorted(instance.get_run_records(RunsFilter()), key=lambda r: (r.create_timestamp, r.dagster_run.run_id))
    out: dict[tuple[str, str], bool] = {}
    for rec in runs:
        run = rec.dagster_run
        days = _run_partitions(run.tags)
        if not days:
            continue
        started, retried, failed, materialized = set(), set(), set(), defaultdict(set)
        for e in instance.all_logs(run.run_id):
            ev = e.dagster_event
            if ev is None or not ev.step_key or not _is_sync(ev.step_key):
                continue
            t = ev.event_type
            if t == DagsterEventType.STEP_START:
                started.add(ev.step_key)
            elif t in (DagsterEventType.STEP_UP_FOR_RETRY, DagsterEventType.STEP_RESTARTED):
                retried.add(ev.step_key)
            elif t == DagsterEventType.STEP_FAILURE:
                failed.add(ev.step_key)
            elif t == DagsterEventType.ASSET_MATERIALIZATION and ev.step_key not in retried:
                materialized[ev.step_key].add(ev.partition)
        for step in started:
            clean = step not in retried and step not in failed
            for day in days:
                # a step's materialization without a partition covers the whole range
                out.setdefault((step, day), clean and (day in materialized[step] or None in materialized[step]))
    return out


def _is_sync(step_key: str) -> bool:
    return step_key.startswith(SYNC_STEP_PREFIXES) or step_key in SYNC_STEPS


def _run_partitions(tags: dict) -> list[str]:
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    a, b = tags.get("dagster/asset_partition_range_start"), tags.get("dagster/asset_partition_range_end")
    if not a or not b:
        return []
    first, last = dt.date.fromisoformat(a), dt.date.fromisoformat(b)
    return [(first + dt.timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def first_attempt_rate(units: dict[tuple[str, str], bool], first: dt.date, last: dt.date) -> float | None:
    inside = [ok for (_, day), ok in units.items() if first.isoformat() <= day <= last.isoformat()]
    return sum(inside) / len(inside) if inside else None
