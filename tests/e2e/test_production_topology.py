"""The production topology, run for real (issue 20): a PostgreSQL-backed Dagster instance
(orchestration/dagster_production.yaml: dagster-postgres storage, the queued run coordinator), the
code location served by its own gRPC server (`dagster code-server start`), `dagster-webserver` and
`dagster-daemon` as separate processes loading it through a gRPC workspace, and the warehouse and
the ERP in PostgreSQL. The nightly job runs twice:
  1. launched through the webserver's GraphQL API for a day, as the UI launches it: queued, then
     started by the daemon in a process of its own;
  2. started by the daemon's scheduler when the nightly schedule's time comes (TRUEUP_NIGHTLY_AT is
     set a minute or two ahead), for the previous day, as every night in production.
Both must succeed, and each day's rows and run facts must be in the PostgreSQL warehouse."""
from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path

import pytest

from tests.topology import (ENDED, SCHEDULED_Q, Topology, gql, launch_partition, production_env, run_ended,
                            schedule_time, start_dagster, wait_for)
from tests.world_fixtures import TINY_WORLD, world_in_env

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def test_nightly_runs_through_webserver_daemon_and_schedule_on_postgres(tmp_path, monkeypatch, pg_cluster):
    from trueup.connectors.warehouse import Warehouse

    dagster_db, warehouse_url, erp_url = (pg_cluster.create_database() for _ in range(3))
    today = dt.datetime.now(dt.timezone.utc).date()
    # three days ending yesterday: the schedule's partition (the previous day) is a day the world lived
    cfg = dataclasses.replace(TINY_WORLD, start_date=today - dt.timedelta(days=3))
    with world_in_env(monkeypatch, tmp_path / "home", cfg=cfg, warehouse_url=warehouse_url, erp_url=erp_url) as w:
        at = schedule_time(dt.datetime.now(dt.timezone.utc))
        env = production_env(w, dagster_db, TRUEUP_TIMEZONE="UTC", TRUEUP_NIGHTLY_AT=at.strftime("%H:%M"))
        dagster_home = Path(env["DAGSTER_HOME"])
        topology = Topology(env, tmp_path / "logs")
        try:
            t0 = time.monotonic()
            url = start_dagster(topology, tmp_path)
            print(f"\ntopology up in {time.monotonic() - t0:.0f} s; the schedule is due at {at:%H:%M:%S} UTC")

            # 1. launched as the UI launches it: queued, then started by the daemon
            day = w.days()[-2].isoformat()
            ui_run = launch_partition(url, "nightly_sync", day, "topology-test")
            t1 = time.monotonic()
            assert run_ended(url, ui_run, topology, 240) == "SUCCESS"
            print(f"the run launched through GraphQL: queued, started by the daemon, SUCCESS after "
                  f"{time.monotonic() - t1:.0f} s")

            # 2. the daemon's scheduler starts the night of the previous day at TRUEUP_NIGHTLY_AT
            yesterday = w.days()[-1].isoformat()

            def scheduled_ended():
                runs = gql(url, SCHEDULED_Q)["runsOrError"]["results"]
                return runs if runs and all(r["status"] in ENDED for r in runs) else None

            wait = (at - dt.datetime.now(dt.timezone.utc)).total_seconds() + 240
            scheduled = wait_for(f"the scheduled run (due {at:%H:%M} UTC) ending", scheduled_ended, topology, wait)
            assert len(scheduled) == 1, scheduled
            tags = {t["key"]: t["value"] for t in scheduled[0]["tags"]}
            assert tags["dagster/partition"] == yesterday and tags["trueup/trigger"] == "schedule"
            assert scheduled[0]["status"] == "SUCCESS", f"{scheduled[0]['runId']}: see {topology.logs}"
            print(f"the scheduled run of {yesterday}: SUCCESS at {dt.datetime.now(dt.timezone.utc):%H:%M:%S} UTC")
            topology.alive()
        finally:
            topology.stop()
        # the runs are in PostgreSQL's run storage (nothing in SQLite under DAGSTER_HOME) and each
        # day's rows and run facts are in the PostgreSQL warehouse, written by those runs
        assert not list(dagster_home.rglob("*.db"))
        wh = Warehouse(warehouse_url)
        try:
            for run_id, partition in ((ui_run, day), (scheduled[0]["runId"], yesterday)):
                facts = wh.query_df("SELECT asset, status FROM ops.sync_runs WHERE run_id = :r AND partition = :p",
                                    {"r": run_id, "p": partition})
                assert {"raw/crm_deals", "validated/crm_deals", "publish/erp_orders"} <= set(facts["asset"]), facts
                assert set(facts["status"]) == {"success"}, facts
                landed = wh.query_df("SELECT count(*) AS n FROM raw.crm_deals WHERE _partition = :p", {"p": partition})
                assert int(landed["n"].iloc[0]) > 0
        finally:
            wh.dispose()
