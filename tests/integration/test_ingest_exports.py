"""ERP nightly exports: corrupt exports are rejected whole with their reason and load once fixed;
the export sensor requests exactly the complete, not-yet-loaded exports; new columns are carried."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, build_sensor_context

from trueup.connectors.erp_schema import make_erp_engine
from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from trueup.orchestration.definitions import build_definitions
from trueup.orchestration.runner import ensure_dagster_home, run_job
from trueup.sandbox.erp.exports import export_rows_from_db, write_export
from tests.world_fixtures import SMALL_WORLD, assert_ingest_succeeded, world_in_env

pytestmark = pytest.mark.slow

EXPORT_JOB = "erp_export_ingest"
#: the small world without drifted exports (invoices only start after the first week)
EXPORT_WORLD = dataclasses.replace(SMALL_WORLD, schema_drift_days=())


@pytest.fixture
def export_world(tmp_path, monkeypatch):
    with world_in_env(monkeypatch, tmp_path / "home", cfg=EXPORT_WORLD) as w:
        yield w


def _busiest_export_day(world):
    """The day whose export holds the most rows, preferring days with invoices and payments."""
    def size(day):
        folder = _folder(world, day)
        n = [len(pd.read_csv(folder / f, dtype=str)) for f in ("invoices.csv", "payments.csv")]
        return (min(n) > 0, n[0] > 0, sum(n))
    day = max(world.days(), key=size)
    assert size(day)[1], "the world has no export with invoices"
    return day


def _wh() -> Warehouse:
    return Warehouse(load_settings().warehouse_url)


def _folder(world, day) -> Path:
    return Path(world.paths.landing_dir) / "exports" / day.isoformat()


def _rewrite_export(world, day) -> None:
    """The ERP team re-exports the day correctly."""
    engine = make_erp_engine(world.paths.erp_url)
    inv, pay = export_rows_from_db(engine, day)
    engine.dispose()
    write_export(world.paths.landing_dir, day, inv, pay)


def _rewrite_manifest(folder: Path, name: str, rows: int | None = None) -> None:
    """Make the manifest match `name` as it is now (sha256), optionally with a given row count."""
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    data = (folder / name).read_bytes()
    for entry in manifest["files"]:
        if entry["name"] == name:
            entry["sha256"] = hashlib.sha256(data).hexdigest()
            entry["rows"] = rows if rows is not None else len(pd.read_csv(folder / name, dtype=str))
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def _bad_checksum(folder: Path) -> str:
    p = folder / "invoices.csv"
    lines = p.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace(".", ",", 1) if "." in lines[1] else lines[1].rstrip("\n") + "x\n"
    p.write_text("".join(lines))
    return "invoices.csv: checksum mismatch"


def _truncated_file(folder: Path) -> str:
    p = folder / "payments.csv"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])  # the transfer stopped half-way
    return "payments.csv: checksum mismatch"


def _short_file(folder: Path) -> str:
    # the file lost rows but the manifest was regenerated from it with the old row count
    p = folder / "invoices.csv"
    lines = p.read_text().splitlines(keepends=True)
    expected = len(lines) - 1
    p.write_text("".join(lines[:-1]))
    _rewrite_manifest(folder, "invoices.csv", rows=expected)
    return f"invoices.csv: {expected - 1} rows, manifest says {expected}"


def _missing_manifest(folder: Path) -> str:
    (folder / "manifest.json").unlink()
    return "manifest.json missing"


def _partition_rows(wh: Warehouse, day) -> dict[str, pd.DataFrame]:
    out = {}
    for table in ("erp_invoices", "erp_payments"):
        df = wh.query_df(f"SELECT * FROM raw.{table} WHERE _partition = :p", {"p": day.isoformat()})
        df = df.drop(columns=["_run_id", "_loaded_at"]).astype(str)
        out[table] = df.sort_values(list(df.columns)).reset_index(drop=True)
    return out


@pytest.mark.parametrize("corrupt", [_bad_checksum, _truncated_file, _short_file, _missing_manifest],
                         ids=["bad_checksum", "truncated_file", "short_file", "missing_manifest"])
def test_corrupt_export_is_rejected_whole_then_fixed_export_loads(export_world, corrupt):
    settings = load_settings()
    day = _busiest_export_day(export_world)
    reason = corrupt(_folder(export_world, day))

    outcome = run_job(settings, EXPORT_JOB, day)
    assert not outcome.success
    assert reason in outcome.error, outcome.error
    wh = _wh()
    for table in ("erp_invoices", "erp_payments"):
        n = wh.scalar(f"SELECT count(*) FROM raw.{table} WHERE _partition = :p", {"p": day.isoformat()}) \
            if wh.query_df("SELECT 1 FROM information_schema.tables WHERE table_schema = 'raw' "
                           "AND table_name = :t", {"t": table}).shape[0] else 0
        assert n == 0, f"{table}: {n} rows of a rejected export landed"
    loads = wh.query_df("SELECT status, reason FROM ops.export_loads WHERE export_date = :d", {"d": day.isoformat()})
    assert list(loads.status) == ["rejected"]
    assert reason in loads.reason[0]
    facts = wh.query_df("SELECT attempt, status, error_class FROM ops.sync_runs WHERE run_id = :r "
                        "AND asset = 'raw/erp_exports'", {"r": outcome.run_id})
    assert facts.to_dict("records") == [{"attempt": 1, "status": "failure", "error_class": "permanent"}]

    # the ERP re-exports the day: it loads, with every row of the files
    _rewrite_export(export_world, day)
    outcome = run_job(settings, EXPORT_JOB, day)
    assert_ingest_succeeded(outcome)
    landed = _partition_rows(wh, day)
    folder = _folder(export_world, day)
    for table, name in (("erp_invoices", "invoices.csv"), ("erp_payments", "payments.csv")):
        assert len(landed[table]) == len(pd.read_csv(folder / name, dtype=str))
    assert len(landed["erp_invoices"]) > 0
    loads = wh.query_df("SELECT status FROM ops.export_loads WHERE export_date = :d ORDER BY checked_at",
                        {"d": day.isoformat()})
    assert list(loads.status) == ["rejected", "loaded"]

    # loading the same export again changes nothing
    assert_ingest_succeeded(run_job(settings, EXPORT_JOB, day))
    again = _partition_rows(wh, day)
    for table in landed:
        pd.testing.assert_frame_equal(again[table], landed[table])


def test_new_export_column_is_carried_along_and_reported(export_world):
    settings = load_settings()
    day = _busiest_export_day(export_world)
    folder = _folder(export_world, day)
    inv = pd.read_csv(folder / "invoices.csv", dtype=str, keep_default_na=False)
    assert len(inv) > 0
    inv["po_reference"] = [f"PO-{i:05d}" for i in range(len(inv))]
    inv.to_csv(folder / "invoices.csv", index=False)
    _rewrite_manifest(folder, "invoices.csv")

    outcome = run_job(settings, "sync_and_gate", day)
    assert_ingest_succeeded(outcome)
    wh = _wh()
    landed = wh.query_df("SELECT invoice_number, po_reference FROM raw.erp_invoices WHERE _partition = :p",
                         {"p": day.isoformat()})
    expected = dict(zip(inv.invoice_number, inv.po_reference))
    assert dict(zip(landed.invoice_number, landed.po_reference)) == expected
    # the current-state view shows it too
    current = wh.query_df("SELECT invoice_number, po_reference FROM raw.erp_invoices_current "
                          "WHERE po_reference IS NOT NULL")
    assert set(current.invoice_number) == set(inv.invoice_number)
    with DagsterInstance.get() as instance:
        inv_meta = instance.get_latest_materialization_event(AssetKey(["raw", "erp_invoices"])) \
            .asset_materialization.metadata
        pay_meta = instance.get_latest_materialization_event(AssetKey(["raw", "erp_payments"])) \
            .asset_materialization.metadata
    assert inv_meta["new_source_columns"].value == ["po_reference"]
    assert pay_meta["new_source_columns"].value == []


# -- the export sensor -------------------------------------------------------------------

def _tick(defs, instance, cursor):
    sensor = defs.resolve_sensor_def("erp_export_sensor")
    ctx = build_sensor_context(instance_ref=instance.get_ref(), cursor=cursor, definitions=defs,
                               sensor_name=sensor.name, repository_name="__repository__", resources=defs.resources)
    with ctx:
        return sensor.evaluate_tick(ctx)


def _captured_log(instance, log_key) -> str:
    data = instance.compute_log_manager.get_log_data(log_key)
    return b"".join(x for x in (data.stdout, data.stderr) if x).decode()


def test_export_sensor_requests_complete_unloaded_exports(export_world):
    settings = load_settings()
    ensure_dagster_home(settings)
    days = export_world.days()
    keys = [d.isoformat() for d in days]
    broken = days[1]
    _missing_manifest(_folder(export_world, broken))
    defs = build_definitions()

    with DagsterInstance.get() as instance:
        # first tick: every complete export is requested for its own partition, the broken one is not
        result = _tick(defs, instance, None)
        assert [r.partition_key for r in result.run_requests] == [k for k in keys if k != keys[1]]
        assert all(r.tags.get("trueup/trigger") == "export_sensor" for r in result.run_requests)
        assert len({r.run_key for r in result.run_requests}) == len(result.run_requests)
        cursor = result.cursor

        # the same exports are not requested twice (cursor); the broken one's reason shows
        result = _tick(defs, instance, cursor)
        assert not result.run_requests
        assert f"{keys[1]}: manifest.json missing" in (result.skip_message or "")

        # exports already loaded (same manifest digest in ops.export_loads) are not requested,
        # even with a lost cursor; the others still are
        for d in (days[0], days[2]):
            assert_ingest_succeeded(run_job(settings, EXPORT_JOB, d))
        result = _tick(defs, instance, None)
        assert [r.partition_key for r in result.run_requests] == [k for k in keys if k not in keys[:3]]

        # the ERP fixes the broken export: it is requested on the next tick, and only it
        _rewrite_export(export_world, broken)
        result = _tick(defs, instance, cursor)
        assert [r.partition_key for r in result.run_requests] == [keys[1]]
        assert "rejected" not in (result.skip_message or "")
        cursor = result.cursor

        # a re-export with different content (new manifest digest) is requested again
        _rewrite_export(export_world, days[0])
        result = _tick(defs, instance, cursor)
        assert [r.partition_key for r in result.run_requests] == [keys[0]]


def test_export_sensor_reports_corrupt_export_next_to_requests(export_world):
    """With new exports to request, a corrupt one still leaves its reason in the tick's log."""
    settings = load_settings()
    ensure_dagster_home(settings)
    day = _busiest_export_day(export_world)
    reason = _bad_checksum(_folder(export_world, day))
    defs = build_definitions()
    with DagsterInstance.get() as instance:
        result = _tick(defs, instance, None)
        assert result.run_requests and day.isoformat() not in [r.partition_key for r in result.run_requests]
        assert result.log_key, "the sensor tick captured no log"
        log = _captured_log(instance, result.log_key)
    assert f"{day.isoformat()}: {reason}" in log, log


def test_exports_before_the_first_business_day_are_the_first_partitions(export_world, monkeypatch):
    """The platform starts on the world's tenth day: the exports of the nine days before it are
    loaded by the first partition's run (the initial load), which the sensor asks for once; once
    loaded they are not asked for again, and a re-export of one of them asks for the first
    partition again."""
    days = export_world.days()
    first = days[9]
    monkeypatch.setenv("TRUEUP_START_DATE", first.isoformat())
    settings = load_settings()
    ensure_dagster_home(settings)
    defs = build_definitions()
    later = [d.isoformat() for d in days[10:]]
    with DagsterInstance.get() as instance:
        result = _tick(defs, instance, None)
        assert [r.partition_key for r in result.run_requests] == [first.isoformat(), *later]

        assert_ingest_succeeded(run_job(settings, EXPORT_JOB, first))
        loads = _wh().query_df("SELECT export_date, status FROM ops.export_loads")
        assert sorted(loads["export_date"]) == [d.isoformat() for d in days[:10]]
        assert set(loads["status"]) == {"loaded"}
        # every invoice of those exports is in raw, on the first day
        held = _wh().query_df("SELECT DISTINCT invoice_number, _partition FROM raw.erp_invoices")
        listed = set()
        for d in days[:10]:
            f = _folder(export_world, d) / "invoices.csv"
            if f.exists():
                listed |= set(pd.read_csv(f, dtype=str)["invoice_number"])
        assert listed and set(held["invoice_number"]) == listed
        assert set(held["_partition"]) == {first.isoformat()}

        result = _tick(defs, instance, None)
        assert [r.partition_key for r in result.run_requests] == later
        _rewrite_export(export_world, days[2])
        result = _tick(defs, instance, result.cursor)
        assert [r.partition_key for r in result.run_requests] == [first.isoformat()]
