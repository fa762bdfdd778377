"""The production instance (orchestration/dagster_production.yaml): run, event-log and
schedule storage in PostgreSQL from DAGSTER_PG_* variables; a real partition of the main
job (`nightly_sync`: ingest, gate, dbt, publish, reconcile, ROI marts) runs on it, and the
run, its steps and its events are read back from PostgreSQL, its rows from the warehouse."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from tests.world_fixtures import tiny_world  # noqa: F401 - fixture

PRODUCTION_YAML = Path(__file__).resolve().parents[2] / "orchestration" / "dagster_production.yaml"


def test_production_yaml_is_documented_and_env_only():
    text = PRODUCTION_YAML.read_text()
    cfg = yaml.safe_load(text)
    assert cfg["telemetry"]["enabled"] is False
    for section in ("run_storage", "event_log_storage", "schedule_storage"):
        assert cfg[section]["module"].startswith("dagster_postgres")
        db = cfg[section]["config"]["postgres_db"]
        assert db["scheme"] == "postgresql+psycopg2"
        assert {k: v["env"] for k, v in db.items() if k != "scheme"} == {
            "hostname": "DAGSTER_PG_HOST", "port": "DAGSTER_PG_PORT", "username": "DAGSTER_PG_USER",
            "password": "DAGSTER_PG_PASSWORD", "db_name": "DAGSTER_PG_DB"}
    assert cfg["run_coordinator"]["class"] == "QueuedRunCoordinator"
    limits = {lim["key"]: lim for lim in cfg["concurrency"]["runs"]["tag_concurrency_limits"]}
    for key in ("dagster/partition", "trueup/business_date"):
        assert limits[key]["value"] == {"applyLimitPerUniqueValue": True} and limits[key]["limit"] == 1
    # and one run writing business days at a time, whatever days (tests/integration/test_run_queue_days.py)
    assert cfg["concurrency"]["pools"] == {"granularity": "run", "default_limit": 1}
    # the DefaultRunLauncher cannot tell that a run's process died: only a maximum runtime frees
    # a run left STARTED by a killed process, which would otherwise hold its day's slot of the
    # per-partition limit above for ever (every later run of that day queued for ever)
    assert cfg["run_launcher"]["class"] == "DefaultRunLauncher"
    assert cfg["run_monitoring"]["enabled"] is True
    assert 0 < cfg["run_monitoring"]["max_runtime_seconds"] <= 24 * 3600
    assert text.count("\n#") >= 5  # documented in comments


def _use_production_instance(home: Path, pg_url: str, monkeypatch):
    """DAGSTER_HOME gets the production dagster.yaml; DAGSTER_PG_* point at `pg_url`."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    url = make_url(pg_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database)
    return url


def _pg_rows(url, sql: str, params: tuple) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall()
    finally:
        conn.close()


def test_nightly_partition_runs_on_postgres(tiny_world, pg_url, monkeypatch):
    """One business day of the whole nightly job (as `trueup nightly --date D` runs it: in
    process through the instance, so no daemon is needed) on the PostgreSQL-backed instance.
    The run takes 45-70 s on a busy 2-core machine, about 5 s more than on the SQLite
    instance (37-52 s): the steps (dbt, GX) take the time, not the storage."""
    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

    from trueup.connectors.warehouse import Warehouse
    from trueup.orchestration.config import load_settings
    from trueup.orchestration.runner import run_job

    home = Path(tiny_world.env["DAGSTER_HOME"])
    url = _use_production_instance(home, pg_url, monkeypatch)
    day = tiny_world.days()[0]
    outcome = run_job(load_settings(), "nightly_sync", day)
    assert outcome.success, outcome.error

    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        run = instance.get_run_by_id(outcome.run_id)
        assert run is not None and run.status == DagsterRunStatus.SUCCESS
        assert run.job_name == "nightly_sync" and run.tags.get("dagster/partition") == day.isoformat()
        planned = {s.key for s in instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id).steps}
    # the whole night, not a subset: ingest, gates, dbt, publish, reconciliations, ROI marts
    assert {"erp_exports", "raw__crm_deals", "validated__crm_deals", "dbt_models", "publish__erp_orders",
            "recon__deals_vs_orders", "dbt_roi_marts"} <= planned, sorted(planned)

    # the run, its tags and its events are really in PostgreSQL (not in SQLite under DAGSTER_HOME)
    assert _pg_rows(url, "SELECT pipeline_name, status FROM runs WHERE run_id = %s",
                    (outcome.run_id,)) == [("nightly_sync", "SUCCESS")]
    assert _pg_rows(url, "SELECT value FROM run_tags WHERE run_id = %s AND key = 'dagster/partition'",
                    (outcome.run_id,)) == [(day.isoformat(),)]
    steps = _pg_rows(url, "SELECT dagster_event_type, step_key FROM event_logs WHERE run_id = %s AND "
                          "dagster_event_type IN ('STEP_SUCCESS', 'STEP_FAILURE')", (outcome.run_id,))
    assert sorted(k for t, k in steps if t == "STEP_SUCCESS") == sorted(planned)
    assert not [k for t, k in steps if t == "STEP_FAILURE"]
    materialized = {k for (k,) in _pg_rows(url, "SELECT DISTINCT asset_key FROM event_logs WHERE run_id = %s "
                                                "AND dagster_event_type = 'ASSET_MATERIALIZATION'",
                                           (outcome.run_id,))}
    for key in (["raw", "crm_contacts"], ["validated", "crm_contacts"], ["marts", "roi_summary"]):
        assert json.dumps(key) in materialized, sorted(materialized)
    # (stored under its legacy name, PIPELINE_SUCCESS)
    assert _pg_rows(url, "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = %s",
                    (outcome.run_id, DagsterEventType.RUN_SUCCESS.value)) == [(1,)]
    assert not list(home.rglob("*.db"))

    # and the night's rows are in the warehouse
    wh = Warehouse(load_settings().warehouse_url)
    try:
        facts = wh.query_df("SELECT asset, partition, status, rows_read, rows_written, rows_quarantined "
                            "FROM ops.sync_runs WHERE run_id = :r", {"r": outcome.run_id})
        assert set(facts.status) == {"success"} and set(facts.partition) == {day.isoformat()}
        assert {"raw/crm_contacts", "validated/crm_contacts", "publish/erp_orders",
                "recon/deals_vs_orders"} <= set(facts.asset)
        raw = facts[facts.asset == "raw/crm_contacts"].iloc[0]
        assert raw.rows_written > 0
        assert wh.scalar("SELECT count(*) FROM raw.crm_contacts WHERE _run_id = :r AND _partition = :d",
                         {"r": outcome.run_id, "d": day.isoformat()}) == raw.rows_written
        gated = facts[facts.asset.str.startswith("validated/")]
        assert (gated.rows_read == gated.rows_written + gated.rows_quarantined).all(), gated
        recons = facts[facts.asset.str.startswith("recon/")]
        assert not recons.empty
        assert wh.scalar("SELECT count(*) FROM recon.runs WHERE run_id = :r", {"r": outcome.run_id}) == len(recons)
        # the ROI marts ran last, over every fact this run recorded
        assert wh.scalar("SELECT count(*) FROM marts.fct_sync_runs WHERE run_id = :r",
                         {"r": outcome.run_id}) == len(facts)
        assert wh.scalar("SELECT count(*) FROM marts.roi_summary") >= 1
    finally:
        wh.dispose()
