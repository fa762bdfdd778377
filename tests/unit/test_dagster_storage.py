"""orchestration/dagster_storage.py: the embedded Dagster instance (dagster_local.yaml) keeps one
SQLite connection per event log shard instead of one per event. What Dagster stores and shows must
not change: compared here with stock Dagster (no storage configured) on the same jobs."""
from __future__ import annotations

import collections
import os
import shutil
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from trueup.orchestration.dagster_storage import KEPT_SHARDS, KeptConnectionSqliteEventLogStorage, adapter_fits
from trueup.orchestration.runner import LOCAL_INSTANCE_YAML


def _home(root: Path, kind: str) -> Path:
    home = root / kind
    home.mkdir()
    if kind == "kept":
        shutil.copy(LOCAL_INSTANCE_YAML, home / "dagster.yaml")
    else:   # Dagster's defaults: SQLite storage with a connection per event
        (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return home


def _instance(home: Path):
    from dagster import DagsterInstance

    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


def _job(on_step=None):
    from dagster import AssetCheckResult, Definitions, asset, asset_check, define_asset_job, in_process_executor

    @asset
    def one():
        if on_step:
            on_step()
        return 1

    @asset
    def two(one):
        return one + 1

    @asset_check(asset=two)
    def two_is_two(two):
        return AssetCheckResult(passed=two == 2)

    return Definitions(assets=[one, two], asset_checks=[two_is_two],
                       jobs=[define_asset_job("j", executor_def=in_process_executor)]).resolve_job_def("j")


def _stored(instance, run_id: str) -> collections.Counter:
    return collections.Counter(e.dagster_event.event_type.name for e in instance.all_logs(run_id) if e.dagster_event)


@pytest.fixture
def dagster_home_env(monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", "/nonexistent")   # each test points it at its own homes


def test_the_same_run_stores_the_same_events_as_stock_dagster(tmp_path, dagster_home_env):
    from dagster import AssetCheckKey, AssetKey, DagsterRunStatus

    stored = {}
    for kind in ("stock", "kept"):
        with _instance(_home(tmp_path, kind)) as instance:
            assert isinstance(instance.event_log_storage, KeptConnectionSqliteEventLogStorage) == (kind == "kept")
            result = _job().execute_in_process(instance=instance)
            assert result.success
            stored[kind] = _stored(instance, result.run_id)
            # the index shard: latest materialization, the check's evaluation, the run's status
            assert instance.get_latest_materialization_event(AssetKey("two")) is not None
            assert instance.get_run_record_by_id(result.run_id).dagster_run.status == DagsterRunStatus.SUCCESS
            checks = instance.event_log_storage.get_asset_check_execution_history(
                AssetCheckKey(AssetKey("two"), "two_is_two"), limit=5)
            assert [c.status.value for c in checks] == ["SUCCEEDED"]
    assert stored["kept"] == stored["stock"]
    assert stored["kept"]["ASSET_MATERIALIZATION"] == 2 and stored["kept"]["RUN_SUCCESS"] == 1


def test_a_watcher_in_another_instance_sees_a_running_runs_events_while_it_runs(tmp_path, dagster_home_env):
    """The UI follows a run by watching its shard file: with the writer's connection kept open,
    commits go to the write-ahead log, and the storage touches the file so the watcher wakes. The
    run's first step waits until the watcher has seen that step start; a watcher that saw nothing
    until the run ended would make it fail."""
    home = _home(tmp_path, "kept")
    seen: list[str] = []
    started = threading.Event()

    def on_event(entry, _cursor):
        if entry.dagster_event is not None:
            seen.append(entry.dagster_event.event_type_value)
            if entry.dagster_event.event_type_value == "STEP_START":
                started.set()

    run_id = str(uuid.uuid4())

    def wait_for_watcher():
        assert started.wait(15), f"the watcher saw {seen} while the step ran"

    with _instance(home) as writer, _instance(home) as ui:
        with writer.event_log_storage.run_connection(run_id):   # the shard exists before the watch starts
            pass
        ui.watch_event_logs(run_id, None, on_event)
        try:
            result = _job(on_step=wait_for_watcher).execute_in_process(instance=writer, run_id=run_id)
        finally:
            ui.end_watch_event_logs(run_id, on_event)
        assert result.success
        assert "STEP_START" in seen


def test_kept_connections_see_what_another_process_wrote(tmp_path, dagster_home_env):
    home = _home(tmp_path, "kept")
    script = (
        "from dagster import DagsterInstance, Definitions, asset, define_asset_job, in_process_executor\n"
        "@asset\ndef other():\n    return 1\n"
        "job = Definitions(assets=[other], jobs=[define_asset_job('o', executor_def=in_process_executor)])"
        ".resolve_job_def('o')\n"
        "with DagsterInstance.get() as i:\n    print(job.execute_in_process(instance=i).run_id)\n")
    from dagster import AssetKey

    with _instance(home) as instance:
        first = _job().execute_in_process(instance=instance)   # this process's connections are open now
        out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "DAGSTER_HOME": str(home)},
                             capture_output=True, text=True, timeout=120, check=True)
        other_run = out.stdout.strip().splitlines()[-1]
        assert _stored(instance, other_run)["RUN_SUCCESS"] == 1
        assert {r.dagster_run.run_id for r in instance.get_run_records()} == {first.run_id, other_run}
        assert instance.get_latest_materialization_event(AssetKey("other")).run_id == other_run


def test_open_shards_stay_bounded_and_a_wipe_starts_clean(tmp_path, dagster_home_env):
    home = _home(tmp_path, "kept")
    with _instance(home) as instance:
        runs = [_job().execute_in_process(instance=instance).run_id for _ in range(KEPT_SHARDS + 3)]
        assert all(_stored(instance, r)["RUN_SUCCESS"] == 1 for r in runs)   # read back: every shard reopened
        shards = home / "history" / "runs"
        open_dbs = [p for p in (os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                                if os.path.exists(f"/proc/self/fd/{fd}")) if p.startswith(str(shards)) and p.endswith(".db")]
        assert len(open_dbs) <= KEPT_SHARDS
        instance.event_log_storage.wipe()
        after = _job().execute_in_process(instance=instance)
        assert _stored(instance, after.run_id)["RUN_SUCCESS"] == 1
        assert [p.name for p in shards.glob("*.db") if p.stem != "index"] == [f"{after.run_id}.db"]


def test_it_applies_only_to_a_tested_dagster_release(tmp_path, dagster_home_env):
    with _instance(_home(tmp_path, "kept")) as instance:
        storage = instance.event_log_storage
        assert adapter_fits(storage)   # the installed release
        assert not adapter_fits(storage, "1.99.0") and not adapter_fits(storage, "2.0.0")


def test_its_commits_wait_for_no_disk_flush_and_a_killed_process_keeps_its_events(tmp_path, dagster_home_env):
    """WAL with synchronous=NORMAL: nothing waits for the disk at each event, and what a process
    committed before it was killed (no close, no checkpoint) is read back by the next one."""
    home = _home(tmp_path, "kept")
    with _instance(home) as instance:
        storage = instance.event_log_storage
        with storage.index_connection() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1   # NORMAL
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    script = (
        "import os\n"
        "from dagster import DagsterInstance, Definitions, asset, define_asset_job, in_process_executor\n"
        "@asset\ndef one():\n    return 1\n"
        "@asset\ndef two(one):\n    return one + 1\n"
        "job = Definitions(assets=[one, two], jobs=[define_asset_job('j', executor_def=in_process_executor)])"
        ".resolve_job_def('j')\n"
        "print(job.execute_in_process(instance=DagsterInstance.get()).run_id, flush=True)\n"
        "os.kill(os.getpid(), 9)\n")   # killed: no connection closed, no checkpoint
    done = subprocess.run([sys.executable, "-c", script], env={**os.environ, "DAGSTER_HOME": str(home)},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == -9, done.stderr[-2000:]
    run_id = done.stdout.split()[-1]
    from dagster import AssetKey

    with _instance(home) as instance:
        stored = _stored(instance, run_id)
        assert stored["RUN_SUCCESS"] == 1 and stored["ASSET_MATERIALIZATION"] == 2
        assert instance.get_latest_materialization_event(AssetKey("two")).run_id == run_id


def test_storing_events_opens_no_connection_per_event(tmp_path, dagster_home_env, monkeypatch):
    """Dagster looks up its tables for every asset and asset check event, each through a new SQLite
    connection; the kept storage remembers what it found. A run of 2 assets and a check after the
    first opens one connection (its new shard) however many events it stores."""
    from sqlite3 import dbapi2 as sqlite3   # the module SQLAlchemy connects through

    home = _home(tmp_path, "kept")
    with _instance(home) as instance:
        _job().execute_in_process(instance=instance)   # the index's tables found once
        opened = []
        real_connect = sqlite3.connect
        monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: opened.append(a[0]) or real_connect(*a, **k))
        run = _job().execute_in_process(instance=instance)
        monkeypatch.setattr(sqlite3, "connect", real_connect)
        stored = _stored(instance, run.run_id)
        assert stored["ASSET_MATERIALIZATION"] == 2 and stored["ASSET_CHECK_EVALUATION"] == 1
        event_log = [Path(p).name for p in opened if Path(p).parent == home / "history" / "runs"]
        assert event_log == [f"{run.run_id}.db"], event_log
