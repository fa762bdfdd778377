"""Analysts read without touching the runs: on DuckDB a read-only copy every night publishes,
readable while the next run writes; on PostgreSQL a read-only role (`trueup analyst-role`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pandas as pd
import pytest
import sqlalchemy as sa

from trueup.assets.analyst_snapshot import snapshot_path
from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from trueup.orchestration.runner import run_job
from tests.world_fixtures import tiny_world  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

#: an analyst's loop: open the copy read-only, ask two of the README's questions, close; report
READER = textwrap.dedent("""
    import duckdb, json, sys, time
    path, stop = sys.argv[1], sys.argv[2]
    ok, errors = 0, []
    import os
    while not os.path.exists(stop):
        try:
            con = duckdb.connect(path, read_only=True)
            con.execute("SELECT period, touchless_rate FROM marts.roi_summary").fetchall()
            con.execute("SELECT recon_name, count(*) FROM recon.breaks WHERE status = 'open' GROUP BY 1").fetchall()
            con.close()
            ok += 1
        except Exception as exc:
            errors.append(str(exc)[:200])
        time.sleep(0.05)
    print(json.dumps({"ok": ok, "errors": errors}))
""")


def _table(wh: Warehouse, sql: str) -> pd.DataFrame:
    df = wh.query_df(sql)
    return df.sort_values(list(df.columns)).reset_index(drop=True)


def test_the_analysts_copy_is_readable_while_a_run_writes_and_then_holds_that_night(tiny_world, tmp_path):
    settings = load_settings()
    days = tiny_world.days()
    assert run_job(settings, "nightly_sync", days[0], days[1]).success
    copy = snapshot_path(settings.home)
    assert copy.is_file() and (copy.stat().st_mode & 0o077) == 0

    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(copy), str(stop)], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        outcome = run_job(settings, "nightly_sync", days[2])   # the run writes the live file meanwhile
    finally:
        stop.touch()
        said = json.loads(reader.communicate(timeout=60)[0])
    assert outcome.success, outcome.error
    assert said["errors"] == [] and said["ok"] >= 5, said   # never blocked, never an error

    # the copy now holds what the live warehouse holds after that night, table for table (both
    # read the same way, so values compare exactly)
    wh, copied = Warehouse(settings.warehouse_url), Warehouse(f"duckdb:///{copy}")
    try:
        for sql in ("SELECT * FROM marts.roi_summary", "SELECT * FROM recon.breaks",
                    "SELECT * FROM quality.quarantine", "SELECT * FROM marts.dim_customer"):
            pd.testing.assert_frame_equal(_table(copied, sql), _table(wh, sql), obj=sql)
        assert outcome.run_id in set(copied.query_df("SELECT DISTINCT run_id FROM ops.sync_runs").run_id)
        # only what analysts query: no raw version log, no validated rows
        schemas = set(copied.query_df("SELECT DISTINCT table_schema FROM information_schema.tables").table_schema)
        assert schemas <= {"marts", "reference", "recon", "quality", "ops"} and "marts" in schemas
    finally:
        copied.dispose()
        wh.dispose()


def test_the_analyst_role_reads_the_marts_as_rebuilt_and_writes_nothing(pg_cluster, pg_url, tmp_path):
    from trueup.orchestration.cli import main

    role = f"analyst_{os.urandom(4).hex()}"
    owner = sa.create_engine(pg_url)
    with owner.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA marts; CREATE TABLE marts.roi_summary AS SELECT 1 AS period"))
    env = {"TRUEUP_HOME": str(tmp_path / "home"), "TRUEUP_WAREHOUSE_URL": pg_url, "TRUEUP_ANALYST_PASSWORD": "pw-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        assert main(["analyst-role", role]) == 0
        assert main(["analyst-role", role]) == 0        # again: updates, no error
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    # the nightly rebuild: dbt drops and creates the table again, as the warehouse's owner
    with owner.begin() as conn:
        conn.execute(sa.text("DROP TABLE marts.roi_summary; CREATE TABLE marts.roi_summary AS SELECT 2 AS period"))
    analyst = sa.create_engine(sa.engine.make_url(pg_url).set(username=role, password="pw-1"))
    try:
        with analyst.connect() as conn:
            assert conn.execute(sa.text("SELECT period FROM marts.roi_summary")).scalar_one() == 2
        with pytest.raises(sa.exc.DBAPIError, match="read-only transaction|permission denied"):
            with analyst.begin() as conn:
                conn.execute(sa.text("INSERT INTO marts.roi_summary VALUES (3)"))
    finally:
        analyst.dispose()
        owner.dispose()


def test_without_a_password_the_role_command_is_one_line(pg_url, tmp_path, capfd, monkeypatch):
    from trueup.orchestration.cli import main

    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRUEUP_WAREHOUSE_URL", pg_url)
    monkeypatch.delenv("TRUEUP_ANALYST_PASSWORD", raising=False)
    assert main(["analyst-role", "analyst_x"]) == 1
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TRUEUP_ANALYST_PASSWORD" in err[0]
