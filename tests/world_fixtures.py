"""A seeded sandbox world with its CRM server running, wired into Trueup's settings via the
environment — what `make demo` builds, in a temporary TRUEUP_HOME."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
from pathlib import Path

import pytest

from trueup.sandbox.crm import start_in_thread
from trueup.sandbox.generator.config import WorldConfig
from trueup.sandbox.generator.world import WorldPaths, seed_world
from tests.fixtures_crm import QUIET_KNOBS

SMALL_WORLD = WorldConfig(seed=11, scale=3.0, days=16, schema_drift_days=((10, "renamed_column"),
                                                                          (12, "retyped_column")))


@dataclasses.dataclass
class World:
    home: Path
    cfg: WorldConfig
    paths: WorldPaths
    server: object
    token: str
    env: dict

    def days(self) -> list[dt.date]:
        return [self.cfg.start_date + dt.timedelta(days=i) for i in range(self.cfg.days)]

    def drift_dates(self) -> list[dt.date]:
        return [self.cfg.start_date + dt.timedelta(days=d) for d in self.cfg.drift_days]


def make_world(home: Path, cfg: WorldConfig = SMALL_WORLD, warehouse_url: str | None = None,
               erp_url: str | None = None, seed_days: int | None = None) -> World:
    """`seed_days`: live only the first days now (default: all); `advance_world` lives the rest."""
    sandbox_root = home / "sandbox"
    sandbox_root.mkdir(parents=True, exist_ok=True)
    paths = WorldPaths(sandbox_root, erp_url or f"sqlite:///{sandbox_root / 'erp.sqlite'}", home / "landing")
    seed_world(paths, cfg, days=seed_days)
    token = "test-token-" + os.urandom(6).hex()
    server = start_in_thread(paths.crm_db, token, knobs=dict(QUIET_KNOBS))
    env = {
        "TRUEUP_HOME": str(home), "TRUEUP_CRM_BASE_URL": server.base_url, "TRUEUP_CRM_TOKEN": token,
        "TRUEUP_ERP_URL": paths.erp_url, "TRUEUP_START_DATE": cfg.start_date.isoformat(),
        "TRUEUP_WAREHOUSE_URL": warehouse_url or f"duckdb:///{home / 'warehouse.duckdb'}",
        "DAGSTER_HOME": str(home / "dagster"),
        # the quiet sandbox enforces no rate limit, and the run is told so: it does not pace itself
        # for HubSpot's (~0.2 s per search, 1-2 s a night); tests of the pacing set the limits
        "TRUEUP_CRM_REQUESTS_PER_10S": "100000", "TRUEUP_CRM_SEARCHES_PER_SECOND": "1000",
    }
    return World(home, cfg, paths, server, token, env)


@contextlib.contextmanager
def world_in_env(monkeypatch, home: Path, **kwargs):
    """`make_world(home, **kwargs)` with its settings in the environment for the test, its CRM
    server stopped after."""
    w = make_world(home, **kwargs)
    for k, v in w.env.items():
        monkeypatch.setenv(k, v)
    try:
        yield w
    finally:
        w.server.stop()


@pytest.fixture
def world(tmp_path, monkeypatch):
    with world_in_env(monkeypatch, tmp_path / "home") as w:
        yield w


#: a few days only and no drifted exports: every night must succeed (for the focused tests)
TINY_WORLD = dataclasses.replace(SMALL_WORLD, scale=1.0, days=3, schema_drift_days=())


@pytest.fixture
def tiny_world(tmp_path, monkeypatch):
    with world_in_env(monkeypatch, tmp_path / "home", cfg=TINY_WORLD) as w:
        yield w


def assert_ingest_succeeded(outcome) -> None:
    """Every ingest (raw/*) step of the run succeeded, whatever later stages (gates) decided:
    the ingestion tests judge ingestion; a gate holding rows back is not an ingest failure."""
    from trueup.connectors.warehouse import Warehouse
    from trueup.orchestration.config import load_settings

    wh = Warehouse(load_settings().warehouse_url)
    facts = wh.query_df("SELECT asset, partition, status, error_message FROM ops.sync_runs "
                        "WHERE run_id = :r AND asset LIKE 'raw/%'", {"r": outcome.run_id})
    wh.dispose()
    assert len(facts), f"run {outcome.run_id} ingested nothing ({outcome.error})"
    failed = facts[facts.status != "success"]
    assert failed.empty, failed.to_dict("records")
    assert outcome.success or (outcome.error or "").startswith("validated__"), outcome.error
