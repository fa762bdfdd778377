"""raw.<obj>_current survives time: after ANY sequence of nightly runs, backfills, re-runs and
out-of-order runs — with CRM edits, the platform's own write-backs, deletes, ERP edits and late or
corrected exports in between — every record holds the latest version the runs observed, and
nothing a later re-run no longer sees is lost.

A hypothesis state machine drives the platform's own ingestion (the code the raw/* assets run)
against a sandbox world, and keeps its own model of what each run must have observed, read
straight from the sources: the CRM store, the ERP database and the export files. After every
step the warehouse's current state must equal the model. On DuckDB and on PostgreSQL.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from trueup.assets.ingest.erp_extract import read_verified_export
from trueup.assets.ingest.history import export_folders, exports_as_one, windows_with_history
from trueup.assets.ingest.incremental import ingest_crm, ingest_erp_table
from trueup.assets.ingest.objects import CRM_OBJECTS, ERP_DB_OBJECTS, ERP_EXPORT_OBJECTS
from trueup.assets.ingest.raw_store import land_partitions
from trueup.connectors.erp_schema import invoices as t_invoices, make_erp_engine, sales_orders as t_orders
from trueup.connectors.hubspot import HubSpotClient
from trueup.connectors.warehouse import Warehouse
from trueup.sandbox.crm import start_in_thread
from trueup.sandbox.crm.store import CrmStore
from trueup.sandbox.erp.exports import export_rows_from_db, write_export
from trueup.sandbox.generator.config import WorldConfig
from trueup.sandbox.generator.world import WorldPaths, seed_world
from tests.fixtures_crm import QUIET_KNOBS
from tests.source_compare import CRM_COMPARE, _norm, crm_warehouse, erp_warehouse

pytestmark = pytest.mark.slow

# clerks key orders all along (go-live after the world's days), so the ERP fills up too
WORLD = WorldConfig(seed=23, scale=1.0, days=10, schema_drift_days=(), golive_date=dt.date(2026, 12, 1))
DAYS = [WORLD.start_date + dt.timedelta(days=i) for i in range(WORLD.days + 2)]   # 2 days past the seeded ones
LOOKBACK_MS = 3_600_000
DAY_MS = 86_400_000
EXAMPLES = int(os.environ.get("TRUEUP_STATE_EXAMPLES", "12"))
#: when a change happens: ms after the first day's start (a day, then a minute in it; moved past the
#: record's last change, so versions only move forward)
AT = st.builds(lambda d, m: d * DAY_MS + m * 60_000, st.sampled_from(range(len(DAYS))), st.integers(0, 1439))


def _ms(day: dt.date) -> int:
    return int(dt.datetime.combine(day, dt.time(0), tzinfo=dt.timezone.utc).timestamp() * 1000)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """One seeded world; every example works on its own copy."""
    root = tmp_path_factory.mktemp("state-world")
    paths = WorldPaths(root / "sandbox", f"sqlite:///{root / 'sandbox' / 'erp.sqlite'}", root / "landing")
    seed_world(paths, WORLD)
    return root


class Sources:
    """The sandbox world of one example: CRM server, ERP database, landing folder."""

    def __init__(self, template: Path, root: Path) -> None:
        shutil.copytree(template, root)
        self.root = root
        self.erp_url = f"sqlite:///{root / 'sandbox' / 'erp.sqlite'}"
        self.landing = root / "landing"
        self.pending = root / "pending_exports"     # exports the ERP has not delivered yet
        self.pending.mkdir()
        self.token = "test-" + os.urandom(6).hex()
        self.server = start_in_thread(root / "sandbox" / "crm.sqlite", self.token, knobs=dict(QUIET_KNOBS))
        self.store = CrmStore(root / "sandbox" / "crm.sqlite")
        self.client = HubSpotClient(self.server.base_url, self.token, max_retries=1, requests_per_10s=10_000,
                                    searches_per_second=1_000)
        self.erp = make_erp_engine(self.erp_url)

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.store.close()
        self.erp.dispose()
        shutil.rmtree(self.root.parent, ignore_errors=True)

    # -- what a run over [lo, hi) must observe, read from the sources themselves ------------------
    def crm_versions(self, t: str, lo: int, hi: int) -> pd.DataFrame:
        df = self.store.all_records(t, archived=None)
        df = df[(df["updated_ms"] >= lo) & (df["updated_ms"] < hi)]
        out = pd.DataFrame({"id": df["id"].astype(str), "_updated": df["updated_ms"].astype("int64"),
                            "_archived": df["archived"].astype(bool)})
        for p in CRM_COMPARE[t]:
            out[p] = df[p] if p in df.columns else None
        if t == "deals":
            out["company_id"] = df["company_id"].astype("string")
        return out

    def erp_versions(self, table: sa.Table, key: str, lo: int, hi: int) -> pd.DataFrame:
        from trueup.assets.ingest.erp_extract import _text

        lo_t, hi_t = (dt.datetime.fromtimestamp(x / 1000, dt.timezone.utc).replace(tzinfo=None) for x in (lo, hi))
        with self.erp.connect() as conn:
            rows = conn.execute(sa.select(table).where(table.c.updated_at >= lo_t, table.c.updated_at < hi_t))
            cols = list(rows.keys())
            df = pd.DataFrame([[_text(v) for v in r] for r in rows], columns=cols, dtype=object)
        df["_updated"] = df["updated_at"]
        df["_archived"] = False
        return df

    def export_versions(self, day: dt.date, name: str) -> pd.DataFrame | None:
        folder = self.landing / "exports" / day.isoformat()
        if not (folder / "manifest.json").exists():
            return None
        df = pd.read_csv(folder / f"{name}.csv", dtype=str, keep_default_na=False)
        df["_updated"] = df["updated_at"]
        df["_archived"] = False
        return df


class Model:
    """Per object and key, the latest version the runs observed (the source's content then)."""

    def __init__(self) -> None:
        self.latest: dict[str, dict[str, dict]] = {}

    def observe(self, obj: str, key: str, versions: pd.DataFrame) -> None:
        held = self.latest.setdefault(obj, {})
        for row in versions.to_dict("records"):
            k = str(row[key])
            if k not in held or row["_updated"] >= held[k]["_updated"]:
                held[k] = row

    def current(self, obj: str, key: str, columns: list[str]) -> pd.DataFrame:
        rows = [r for r in self.latest.get(obj, {}).values() if not r["_archived"]]
        df = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
        return _norm(df[columns], key)


def state_machine(template: Path, warehouse_url):
    class RawStateOverTime(RuleBasedStateMachine):
        """Runs in any order with the sources changing in between; raw current == the model."""

        def __init__(self) -> None:
            super().__init__()
            self.src = Sources(template, Path(tempfile.mkdtemp(prefix="state-")) / "w")
            self.url = warehouse_url(self.src.root)
            self.wh = Warehouse(self.url)
            # the file stays open for the machine's life, as a run's warehouse does from step to step
            self._held = contextlib.ExitStack()
            self._held.enter_context(self.wh.held_open())
            self.model = Model()
            self.runs = 0
            self.writebacks = 0

        def teardown(self) -> None:
            self._held.close()
            self.wh.dispose()
            self.src.close()

        @initialize(late=st.sets(st.sampled_from(DAYS[:WORLD.days]), max_size=2), start=st.sampled_from([0, 3]))
        def some_exports_arrive_late(self, late, start):
            """`start`: the platform's first business day (TRUEUP_START_DATE), the world's first or its
            fourth: then the first partition's runs load the three days of history before it (the
            initial load, assets/ingest/history.py), late exports of those days included."""
            self.start = start
            for day in late:
                shutil.move(self.src.landing / "exports" / day.isoformat(), self.src.pending / day.isoformat())

        # -- runs: nightly (one day), backfill (a range), re-runs and out-of-order runs alike ---
        @rule(first=st.integers(0, len(DAYS) - 1), length=st.integers(1, 4))
        def run(self, first, length):
            first = max(first, self.start)   # no partition before the platform's first
            days = DAYS[first:first + length]
            windows = windows_with_history(
                [(d.isoformat(), dt.datetime.combine(d, dt.time(0), tzinfo=dt.timezone.utc),
                  dt.datetime.combine(d + dt.timedelta(days=1), dt.time(0), tzinfo=dt.timezone.utc)) for d in days],
                DAYS[self.start].isoformat())
            # what the run must observe: from the beginning of time for the first partition, else from
            # an hour before its first day
            lo = 0 if days[0] == DAYS[self.start] else _ms(days[0]) - LOOKBACK_MS
            hi = _ms(days[-1]) + DAY_MS
            self.runs += 1
            run_id = f"run-{self.runs}"
            # what the sources hold for the run's windows, read before the run (nothing moves during it)
            expected = {o.name: self.src.crm_versions(o.source_name, lo, hi) for o in CRM_OBJECTS.values()}
            expected |= {o.name: self.src.erp_versions(table, o.key, lo, hi)
                         for o, table in ((ERP_DB_OBJECTS["customers"], _customers()),
                                          (ERP_DB_OBJECTS["sales_orders"], t_orders))}
            for obj in CRM_OBJECTS.values():
                ingest_crm(self.wh, self.src.client, obj, windows, "UTC", run_id)
            for obj in ERP_DB_OBJECTS.values():
                ingest_erp_table(self.wh, self.src.erp, obj, windows, "UTC", run_id)
            for name, obj in expected.items():
                key = {**{o.name: o.key for o in CRM_OBJECTS.values()},
                       **{o.name: o.key for o in ERP_DB_OBJECTS.values()}}[name]
                self.model.observe(name, key, obj)
            for day in days:   # an export that is not there (yet) is rejected and loads nothing
                # the first partition loads the export folders dated before it too (as the asset does)
                folders = export_folders(self.src.landing, day.isoformat(), DAYS[self.start].isoformat())
                try:
                    read = [read_verified_export(self.src.landing, f, ERP_EXPORT_OBJECTS_BY_NAME)[1] for f in folders]
                except Exception:  # noqa: BLE001 - rejected: the asset records it and loads the other days
                    continue
                for name, obj in ERP_EXPORT_OBJECTS_BY_NAME.items():
                    land_partitions(self.wh, obj, {day.isoformat(): exports_as_one([r[name] for r in read])}, run_id,
                                    lambda p, n=obj.source_name: f"erp_export:{p}/{n}.csv")
                    for f in folders:
                        self.model.observe(name, obj.key,
                                           self.src.export_versions(dt.date.fromisoformat(f), obj.source_name))

        # -- the world moves on between runs ------------------------------------------------------
        @rule(kind=st.sampled_from(["companies", "contacts", "deals"]), pick=st.integers(0, 10_000),
              at=AT)
        def crm_edit(self, kind, pick, at):
            rec = self._pick_live(kind, pick)
            prop = {"companies": "name", "contacts": "lastname", "deals": "dealname"}[kind]
            self._crm_write(kind, rec, {prop: f"{rec.get(prop) or ''}+"}, at)

        @rule(pick=st.integers(0, 10_000), at=AT)
        def platform_writeback(self, pick, at):
            """What publish does: an ERP order number written back to the deal bumps its updatedAt."""
            rec = self._pick_live("deals", pick)
            self.writebacks += 1
            self._crm_write("deals", rec, {"erp_order_number": f"SO-{900000 + self.writebacks}"}, at)

        @rule(kind=st.sampled_from(["companies", "contacts", "deals"]), pick=st.integers(0, 10_000),
              at=AT)
        def crm_delete(self, kind, pick, at):
            rec = self._pick_live(kind, pick)
            self.src.store.archive(kind, [int(rec["id"])], self._after(rec, at))

        @rule(pick=st.integers(0, 10_000), at=AT)
        def erp_order_edit(self, pick, at):
            self._erp_edit(t_orders, "order_number", "total_amount", pick, at)

        @rule(pick=st.integers(0, 10_000), at=AT)
        def erp_invoice_edit_and_reexport(self, pick, at):
            """An invoice changes; the ERP team re-exports that day (a late, corrected export)."""
            when = self._erp_edit(t_invoices, "invoice_number", "amount", pick, at)
            if when is None or (self.src.pending / when.date().isoformat()).exists():
                return   # nothing to edit, or that day's export is still late: it arrives as it was produced
            inv, pay = export_rows_from_db(self.src.erp, when.date())
            write_export(self.src.landing, when.date(), inv, pay)

        @rule(pick=st.integers(0, 10))
        def late_export_arrives(self, pick):
            waiting = sorted(self.src.pending.iterdir())
            if waiting:
                folder = waiting[pick % len(waiting)]
                shutil.move(folder, self.src.landing / "exports" / folder.name)

        # -- the invariant ------------------------------------------------------------------------
        @invariant()
        def raw_current_is_the_latest_observed_version(self):
            if not self.runs:
                return
            for t in ("companies", "contacts", "deals"):
                cols = ["id", *CRM_COMPARE[t]] + (["company_id"] if t == "deals" else [])
                pd.testing.assert_frame_equal(crm_warehouse(self.wh, t), self.model.current(f"crm_{t}", "id", cols),
                                              obj=f"raw.crm_{t}_current after run {self.runs}")
            for obj in (*ERP_DB_OBJECTS.values(), *ERP_EXPORT_OBJECTS.values()):
                if obj.name not in self.model.latest:
                    continue
                pd.testing.assert_frame_equal(erp_warehouse(self.wh, obj.source_name),
                                              self.model.current(obj.name, obj.key, list(obj.columns)),
                                              obj=f"raw.{obj.name}_current after run {self.runs}")

        # -- helpers ------------------------------------------------------------------------------
        def _pick_live(self, kind: str, pick: int) -> dict:
            """A live record; mostly one the runs have already seen (what a re-run could lose)."""
            live = self.src.store.all_records(kind, archived=False)
            seen = live[live["id"].astype(str).isin(self.model.latest.get(f"crm_{kind}", {}))]
            pool = seen if len(seen) and pick % 4 else live
            return pool.iloc[pick % len(pool)].to_dict()

        def _erp_edit(self, table: sa.Table, key: str, amount: str, pick: int, at: int) -> dt.datetime | None:
            """Add 1 to one row's amount, modified later than its last change; returns when."""
            with self.src.erp.begin() as conn:
                rows = conn.execute(sa.select(table.c[key], table.c.updated_at).order_by(table.c[key])).fetchall()
                if not rows:
                    return None
                number, updated = rows[pick % len(rows)]
                when = _after_dt(updated, at)
                conn.execute(sa.update(table).where(table.c[key] == number)
                             .values({amount: table.c[amount] + 1, "updated_at": when}))
            return when

        @staticmethod
        def _after(rec: dict, at: int) -> int:
            """A change happens after the record's last one (versions only move forward)."""
            return max(_ms(DAYS[0]) + at, int(rec["updated_ms"]) + 60_000)

        def _crm_write(self, kind: str, rec: dict, props: dict, at: int) -> None:
            self.src.server.set_knobs(frozen_timestamp_ms=self._after(rec, at))
            try:
                outcome = self.src.client.batch_update(kind, [{"id": int(rec["id"]), "properties": props}])
                assert outcome.ok, outcome
            finally:
                self.src.server.set_knobs(frozen_timestamp_ms=None)

    return RawStateOverTime


ERP_EXPORT_OBJECTS_BY_NAME = {o.name: o for o in ERP_EXPORT_OBJECTS.values()}


def _customers() -> sa.Table:
    from trueup.connectors.erp_schema import customers

    return customers


def _after_dt(updated, at: int) -> dt.datetime:
    base = dt.datetime.combine(DAYS[0], dt.time(0)) + dt.timedelta(milliseconds=at)
    if updated.tzinfo is not None:
        updated = updated.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return max(base, updated + dt.timedelta(minutes=1))


SETTINGS = settings(max_examples=EXAMPLES, stateful_step_count=10, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def test_raw_current_survives_any_sequence_of_runs_duckdb(template):
    machine = state_machine(template, lambda root: f"duckdb:///{root / 'warehouse.duckdb'}")
    run_state_machine_as_test(machine, settings=SETTINGS)


@pytest.mark.postgres
def test_raw_current_survives_any_sequence_of_runs_postgres(template, pg_cluster):
    made: list[str] = []

    def url(_root):
        made.append(pg_cluster.create_database())
        return made[-1]

    run_state_machine_as_test(state_machine(template, url), settings=SETTINGS)
    for u in made:
        try:
            pg_cluster.drop_database(u.rsplit("/", 1)[1])
        except Exception:  # noqa: BLE001 - the cluster is thrown away anyway
            pass
