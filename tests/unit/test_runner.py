"""orchestration.runner: runs through the SQLite instance keep every event, with the event log
connections held open for the run (runner.event_log_kept_open)."""
from __future__ import annotations

import shutil
import sqlite3
import uuid

from trueup.orchestration.runner import LOCAL_INSTANCE_YAML, event_log_kept_open


def test_a_run_with_the_event_log_kept_open_stores_every_event(tmp_path, monkeypatch):
    from dagster import DagsterEventType, DagsterInstance, Definitions, asset, define_asset_job, in_process_executor

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copy(LOCAL_INSTANCE_YAML, tmp_path / "dagster.yaml")

    @asset
    def one():
        return 1

    job = Definitions(assets=[one], jobs=[define_asset_job("j", executor_def=in_process_executor)]).resolve_job_def("j")
    run_id = str(uuid.uuid4())
    with DagsterInstance.get() as instance:
        with event_log_kept_open(instance, run_id):
            shard = instance.event_log_storage.path_for_shard(run_id)
            assert sqlite3.connect(shard).execute("PRAGMA journal_mode").fetchone() == ("wal",)
            result = job.execute_in_process(instance=instance, run_id=run_id)
        assert result.success
        kinds = {e.dagster_event.event_type for e in instance.all_logs(run_id) if e.dagster_event}
        assert {DagsterEventType.RUN_SUCCESS, DagsterEventType.ASSET_MATERIALIZATION_PLANNED,
                DagsterEventType.ASSET_MATERIALIZATION} <= kinds
        assert instance.get_latest_materialization_event(one.key) is not None  # the index shard too
    # the last connection closed: the write-ahead logs are checkpointed and gone
    assert not list(tmp_path.glob("history/runs/*-wal"))
