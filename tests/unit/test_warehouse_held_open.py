"""Warehouse.held_open: a step keeps its DuckDB database open in its process, so its many short
transactions join the open database; the file is another process's again when the block ends."""
from __future__ import annotations

import subprocess
import sys

import sqlalchemy as sa

from trueup.connectors.warehouse import Warehouse

PROBE = ("import duckdb, sys\n"
         "try:\n    duckdb.connect(sys.argv[1]).close(); print('opened')\n"
         "except Exception as e:\n    print('locked' if 'lock' in str(e).lower() else repr(e))\n")


def _other_process_opens(path) -> str:
    return subprocess.run([sys.executable, "-c", PROBE, str(path)], capture_output=True, text=True,
                          timeout=60).stdout.strip()


def test_held_open_keeps_the_file_for_the_block_and_transactions_work_inside(tmp_path):
    path = tmp_path / "wh.duckdb"
    wh = Warehouse(f"duckdb:///{path}", lock_timeout_s=1)
    with wh.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    assert _other_process_opens(path) == "opened"          # between transactions the file is free
    with wh.held_open():
        for i in range(20):
            with wh.begin() as conn:
                conn.execute(sa.text("INSERT INTO t VALUES (:x)"), {"x": i})
        assert _other_process_opens(path) == "locked"      # held by this process for the block
        assert wh.query_df("SELECT count(*) AS n FROM t").n[0] == 20
    assert _other_process_opens(path) == "opened"          # and free again after it
    assert wh.query_df("SELECT sum(x) AS s FROM t").s[0] == sum(range(20))
    wh.dispose()


def test_held_open_gives_the_file_back_when_the_block_fails(tmp_path):
    path = tmp_path / "wh.duckdb"
    wh = Warehouse(f"duckdb:///{path}", lock_timeout_s=1)
    try:
        with wh.held_open():
            raise RuntimeError("the step failed")
    except RuntimeError:
        pass
    assert _other_process_opens(path) == "opened"
    wh.dispose()


def test_a_runs_warehouse_keeps_the_file_from_step_to_step_until_released(tmp_path):
    """keep_between_blocks (the run's warehouse resource): a block that succeeds leaves the file
    open for the next (a block inside it changes nothing); a failing block, release() (the run's
    end) and release_held() (before a dbt build) give it back."""
    from trueup.connectors.warehouse import release_held

    path = tmp_path / "wh.duckdb"
    wh = Warehouse(f"duckdb:///{path}", lock_timeout_s=1)
    wh.keep_between_blocks = True
    with wh.held_open():
        with wh.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t (x INTEGER)"))
    assert _other_process_opens(path) == "locked"          # kept for the next step
    with wh.held_open():
        with wh.held_open():   # e.g. a helper of the step holding the file itself
            with wh.begin() as conn:
                conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert _other_process_opens(path) == "locked"
    assert _other_process_opens(path) == "locked"
    release_held()
    assert _other_process_opens(path) == "opened"          # a dbt build may open it its own way
    with wh.held_open():
        pass
    assert _other_process_opens(path) == "locked"
    try:
        with wh.held_open():
            raise RuntimeError("the step failed")
    except RuntimeError:
        pass
    assert _other_process_opens(path) == "opened"          # a failed step gives it back, kept or not
    with wh.held_open():
        pass
    wh.release()
    assert _other_process_opens(path) == "opened"          # the run's end
    assert wh.query_df("SELECT count(*) AS n FROM t").n[0] == 1
    wh.dispose()


def test_the_run_gives_the_file_back_at_its_end(tmp_path, monkeypatch):
    """Through Dagster: the warehouse resource's teardown releases what its steps kept."""
    from dagster import Definitions, asset, define_asset_job, in_process_executor

    from trueup.orchestration.resources import WarehouseResource

    path = tmp_path / "wh.duckdb"
    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path / "home"))

    @asset(required_resource_keys={"warehouse"})
    def writes(context):
        wh = context.resources.warehouse.get()
        with wh.held_open():
            with wh.begin() as conn:
                conn.execute(sa.text("CREATE TABLE IF NOT EXISTS t (x INTEGER)"))
        assert _other_process_opens(path) == "locked"       # kept after the step's block

    job = Definitions(assets=[writes], resources={"warehouse": WarehouseResource(url=f"duckdb:///{path}")},
                      jobs=[define_asset_job("j", executor_def=in_process_executor)]).resolve_job_def("j")
    assert job.execute_in_process().success
    assert _other_process_opens(path) == "opened"
