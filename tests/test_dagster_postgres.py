"""The production instance (orchestration/dagster_production.yaml): run, event-log and
schedule storage in PostgreSQL from DAGSTER_PG_* variables; a real partitioned run is
stored there and read back."""
from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from sqlalchemy.engine import make_url

from tests.world_fixtures import tiny_world  # noqa: F401 - fixture

PRODUCTION_YAML = Path(__file__).resolve().parents[1] / "orchestration" / "dagster_production.yaml"


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
    coord = cfg["run_coordinator"]
    assert coord["class"] == "QueuedRunCoordinator"
    limits = {lim["key"]: lim for lim in coord["config"]["tag_concurrency_limits"]}
    for key in ("dagster/partition", "trueup/business_date"):
        assert limits[key]["value"] == {"applyLimitPerUniqueValue": True} and limits[key]["limit"] == 1
    assert text.count("\n#") >= 5  # documented in comments


def test_run_is_stored_in_postgres(tiny_world, pg_url, monkeypatch):
    import psycopg2
    from dagster import DagsterInstance, DagsterRunStatus

    from orchestration.config import load_settings
    from orchestration.runner import run_job

    home = Path(tiny_world.env["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(PRODUCTION_YAML, home / "dagster.yaml")
    url = make_url(pg_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", url.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", url.database)

    # erp_export_ingest (one day: raw + validated ERP exports) — the storage is what is under test;
    # nightly_sync's publish/dbt steps add minutes and nothing about storage
    day = tiny_world.days()[0]
    outcome = run_job(load_settings(), "erp_export_ingest", day)
    assert outcome.success, outcome.error

    with DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        run = instance.get_run_by_id(outcome.run_id)
        assert run is not None and run.status == DagsterRunStatus.SUCCESS
        assert run.job_name == "erp_export_ingest" and run.tags.get("dagster/partition") == day.isoformat()
        assert instance.get_records_for_run(outcome.run_id).records  # events stored too

    # and it is really in PostgreSQL, not in a SQLite file under DAGSTER_HOME
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM runs WHERE run_id = %s", (outcome.run_id,))
            assert cur.fetchone() == ("SUCCESS",)
    finally:
        conn.close()
    assert not list(home.rglob("*.db"))
