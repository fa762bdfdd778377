"""`make prod-local`: Trueup's production topology on this machine, for a person to look at.

    make prod-local                          # until Ctrl-C; the UI on http://127.0.0.1:3000
    .venv/bin/python -m trueup.sandbox.prod_local --check     # up, checked, down (the test)

What runs (sandbox/topology.py; the processes the topology test runs and compose.yaml names): a
throwaway PostgreSQL cluster in the temporary folder (sandbox/postgres.py) with the Dagster instance's
storage, the warehouse and the ERP; the sandbox world (the demo's seed) with its last day
yesterday, so the nightly schedule's next run is a day the world lived; its CRM on 127.0.0.1 at
HubSpot's limits; the code location's gRPC server; the webserver; the daemon (the schedule, the
sensors, the run queue). Launch a night from the UI (job `nightly_sync`, a partition): it is
queued, the daemon starts it, the code server runs it. Everything stops with Ctrl-C, and the home
(default ./.trueup-prod-local, private to the user) is made anew on each start.
"""
from __future__ import annotations

import argparse
import datetime as dt
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m trueup.sandbox.prod_local", description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=Path(".trueup-prod-local"))
    ap.add_argument("--port", type=int, default=3000, help="the UI's port on 127.0.0.1 (3000)")
    ap.add_argument("--days", type=int, default=14, help="days of history, the last one yesterday (14)")
    ap.add_argument("--check", action="store_true", help="bring it up, check the UI serves the graph, stop")
    args = ap.parse_args(argv)

    from trueup.sandbox.crm import start_in_thread
    from trueup.sandbox.generator.config import WorldConfig
    from trueup.sandbox.generator.world import WorldPaths, seed_world
    from trueup.sandbox.postgres import PgCluster, PgUnavailable
    from trueup.sandbox.topology import Topology, TopologyError, production_env, start_dagster

    home = args.home.resolve()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True, mode=0o700)
    try:   # in the temporary folder: when run as root, the server runs as a user that cannot enter the home
        cluster = PgCluster.start()
    except (PgUnavailable, RuntimeError) as exc:
        print(f"prod-local: PostgreSQL did not start: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    server = topology = None
    # SIGTERM ends it like Ctrl-C: everything below is stopped in `finally`
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        dagster_db, warehouse_url, erp_url = (cluster.create_database(n) for n in ("dagster", "warehouse", "erp"))
        today = dt.datetime.now(dt.timezone.utc).date()
        cfg = WorldConfig(seed=42, scale=1.0, days=args.days, schema_drift_days=(),
                          start_date=today - dt.timedelta(days=args.days))
        paths = WorldPaths(home / "sandbox", erp_url, home / "landing")
        print(f"seeding the sandbox world ({cfg.start_date} .. {today - dt.timedelta(days=1)}) …", flush=True)
        seed_world(paths, cfg)
        token = "prod-local-" + secrets.token_hex(8)
        server = start_in_thread(paths.root / "crm.sqlite", token)   # the sandbox's defaults: HubSpot's limits
        env = production_env({
            "TRUEUP_HOME": str(home), "TRUEUP_WAREHOUSE_URL": warehouse_url, "TRUEUP_ERP_URL": erp_url,
            "TRUEUP_LANDING_DIR": str(paths.landing_dir), "TRUEUP_CRM_BASE_URL": server.base_url,
            "TRUEUP_CRM_TOKEN": token, "TRUEUP_START_DATE": cfg.start_date.isoformat(),
            "TRUEUP_PUBLISH_FROM": cfg.golive.isoformat(), "DAGSTER_HOME": str(home / "dagster")}, dagster_db)
        topology = Topology(env, home / "logs")
        print("starting the code server, the webserver and the daemon …", flush=True)
        start_dagster(topology, home, web_port=args.port)
        print(f"\nTrueup's production topology is up:\n"
              f"  UI            http://127.0.0.1:{args.port}  (launch nightly_sync for a day: queued, then run)\n"
              f"  PostgreSQL    127.0.0.1:{cluster.port}  databases dagster, warehouse, erp\n"
              f"  sandbox CRM   {server.base_url}\n"
              f"  processes     code server, webserver, daemon — logs in {home / 'logs'}\n"
              f"  schedule      nightly_sync_schedule at 02:00 UTC for the previous day", flush=True)
        if args.check:
            print("check: ok")
            return 0
        print("Ctrl-C stops everything.", flush=True)
        while True:
            topology.alive()
            time.sleep(5)
    except KeyboardInterrupt:
        print("\nstopping …")
        return 0
    except TopologyError as exc:
        print(f"prod-local: {str(exc).splitlines()[0]} (logs in {home / 'logs'})", file=sys.stderr)
        return 1
    finally:
        if topology is not None:
            topology.stop()
        if server is not None:
            server.stop()
        cluster.stop()


if __name__ == "__main__":
    raise SystemExit(main())
