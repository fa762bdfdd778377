"""One active run per business day for the runs Dagster launches (schedule, sensors, UI), ranges
included. The instance is Trueup's own dagster.yaml (local: SQLite; production: PostgreSQL) with
a launcher that records launches instead of starting processes; the run queue is Dagster's own
daemon iteration (QueuedRunCoordinatorDaemon), run by hand, so nothing here depends on timing.

A single-run backfill of a range carries only `dagster/asset_partition_range_start/_end`, never
a per-day tag, so the per-value tag limits cannot hold it against a run of a day inside its range
(nor the other way round). The assets that write a business day's data belong to the pool
`business_day_writes` (assets/pools.py), limited to one run in progress at a time."""
from __future__ import annotations


import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus

from tests.run_queue import ORCH, RANGE_END, RANGE_START, Queue, backfill_tags  # noqa: F401


@pytest.fixture(params=["local", "production"])
def instance(request, tmp_path, monkeypatch):
    """Trueup's instance config as shipped, its launcher swapped for one that only records launches."""
    for k in ("TRUEUP_CRM_BASE_URL", "TRUEUP_WAREHOUSE_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRUEUP_START_DATE", "2026-09-01")
    cfg = yaml.safe_load((ORCH / f"dagster_{request.param}.yaml").read_text())
    if request.param == "production":
        from sqlalchemy.engine import make_url

        url = make_url(request.getfixturevalue("pg_url"))
        for var, value in (("HOST", url.host), ("PORT", str(url.port)), ("USER", url.username),
                           ("PASSWORD", url.password or ""), ("DB", url.database)):
            monkeypatch.setenv(f"DAGSTER_PG_{var}", value)
        cfg.pop("run_monitoring")   # the daemon's monitoring is not run here
    cfg["run_launcher"] = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    home = tmp_path / "dagster"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))   # where the CLI (orchestration/runner.py) looks
    (home / "dagster.yaml").write_text(yaml.safe_dump(cfg))
    with DagsterInstance.from_config(str(home)) as inst:
        yield inst


@pytest.fixture
def defs():
    from trueup.orchestration.definitions import build_definitions

    return build_definitions()


@pytest.fixture
def queue(instance, defs):
    q = Queue(instance, defs)
    yield q
    q.close()


def test_the_instance_limits_writing_runs_to_one_at_a_time(instance, defs):
    from dagster._core.instance.config import PoolGranularity

    from trueup.assets.pools import BUSINESS_DAY_WRITES

    pools = instance.get_concurrency_config().pool_config
    assert (pools.pool_granularity, pools.default_pool_limit) == (PoolGranularity.RUN, 1)
    nightly = defs.resolve_job_def("nightly_sync")
    step_pools = {node.name: node.definition.pool for node in nightly.graph.nodes}
    for step in ("raw__crm_deals", "erp_exports", "validated__crm_deals", "publish__erp_orders"):
        assert step_pools[step] == BUSINESS_DAY_WRITES, step_pools


def test_the_morning_reconciliation_waits_for_a_night_in_progress(queue, defs):
    """recon.breaks is a business day's state too: the 06:00 reconcile run does not write it
    while a nightly run (which reconciles as well) is in progress."""
    from trueup.assets.pools import BUSINESS_DAY_WRITES

    reconcile = defs.resolve_job_def("reconcile")
    recon_steps = [n for n in reconcile.graph.nodes if n.name.startswith("recon__")]
    assert recon_steps and all(n.definition.pool == BUSINESS_DAY_WRITES for n in recon_steps)
    night = queue.submit("nightly_sync", {"dagster/partition": "2026-09-03"})
    queue.pass_()
    morning = queue.submit("reconcile", {"dagster/partition": "2026-09-03"})
    queue.pass_()
    assert queue.started(night) and queue.status(morning) == DagsterRunStatus.QUEUED
    queue.finish(night)
    queue.pass_()
    assert queue.started(morning)


def test_a_run_of_one_day_waits_for_a_range_run_that_covers_it(queue):
    backfill = queue.submit("nightly_sync", backfill_tags("2026-09-01", "2026-09-05"))
    queue.pass_()
    assert queue.started(backfill)
    night = queue.submit("nightly_sync", {"dagster/partition": "2026-09-03"})   # the 02:00 schedule
    queue.pass_()
    assert queue.status(night) == DagsterRunStatus.QUEUED          # held, not lost
    queue.finish(backfill)
    queue.pass_()
    assert queue.started(night)


def test_a_range_run_waits_for_a_run_of_a_day_inside_it(queue):
    night = queue.submit("nightly_sync", {"dagster/partition": "2026-09-03"})
    queue.pass_()
    assert queue.started(night)
    backfill = queue.submit("nightly_sync", backfill_tags("2026-09-02", "2026-09-04"))
    export = queue.submit("erp_export_ingest", {"dagster/partition": "2026-09-04", "trueup/business_date": "2026-09-04"})
    queue.pass_()
    assert queue.status(backfill) == DagsterRunStatus.QUEUED and queue.status(export) == DagsterRunStatus.QUEUED
    queue.finish(night)
    queue.pass_()   # one at a time: the older waiting run first
    assert queue.started(backfill) and queue.status(export) == DagsterRunStatus.QUEUED


def test_an_ad_hoc_materialization_of_the_publish_step_waits_too(queue):
    """From the asset graph, not a job: the pool belongs to the asset, whatever selects it."""
    night = queue.submit("nightly_sync", {"dagster/partition": "2026-09-03"})
    queue.pass_()
    # the publish pass is one op with four outputs (ERP customers and orders, CRM write-backs and
    # financials): the UI selects them together
    from trueup.assets.publish.definitions import OUTPUTS

    publish = queue.submit("__ASSET_JOB", backfill_tags("2026-09-01", "2026-09-30"), assets=set(OUTPUTS))
    queue.pass_()
    assert queue.started(night) and queue.status(publish) == DagsterRunStatus.QUEUED


def test_a_run_the_cli_executes_itself_holds_the_queue_while_it_runs(queue):
    """`trueup backfill` executes in its own process (never queued) but is recorded in the
    instance as in progress: the queue counts it — from the first queued run the instance sees
    on (the CLI gives the pool its limit when it opens the instance)."""
    from trueup.orchestration.config import load_settings
    from trueup.orchestration.runner import open_instance

    with open_instance(load_settings()):
        cli = queue.submit("nightly_sync", {RANGE_START: "2026-09-01", RANGE_END: "2026-09-07",
                                            "trueup/trigger": "cli"}, status=DagsterRunStatus.STARTED)
    night = queue.submit("nightly_sync", {"dagster/partition": "2026-09-05"})
    queue.pass_()
    assert queue.status(night) == DagsterRunStatus.QUEUED
    queue.finish(cli)
    queue.pass_()
    assert queue.started(night)


def test_runs_that_write_no_business_day_do_not_wait(queue):
    backfill = queue.submit("nightly_sync", backfill_tags("2026-09-01", "2026-09-05"))
    queue.pass_()
    key = {"idempotency_key": "erp-order:crm-deal:20000123", "actor": "ops@x"}
    resolve = queue.submit("resolve_held_write", {}, run_config={"ops": {"resolve_held_write_op": {
        "config": {**key, "action": "release"}}}})
    queue.pass_()
    assert queue.started(backfill) and queue.started(resolve)
    queue.finish(resolve)   # (the local instance runs at most 2 runs at once)
    approve = queue.submit("approve_write", {}, run_config={"ops": {"approve_write_op": {"config": key}}})
    queue.pass_()
    assert queue.started(approve) and queue.status(backfill) != DagsterRunStatus.FAILURE
