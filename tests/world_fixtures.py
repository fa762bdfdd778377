"""A seeded sandbox world with its CRM server running, wired into Trueup's settings via the
environment — what `make demo` builds, in a temporary TRUEUP_HOME."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

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
    return _serve(home, cfg, paths, warehouse_url)


def _serve(home: Path, cfg: WorldConfig, paths: WorldPaths, warehouse_url: str | None) -> World:
    """A world's CRM server started, and the settings that point a run at the world."""
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
        # GX Data Docs off (~65 ms per gate step, ~0.5 s a night): the tests of Data Docs switch them on
        "TRUEUP_GX_DATA_DOCS": "off",
    }
    return World(home, cfg, paths, server, token, env)


@contextlib.contextmanager
def world_in_env(monkeypatch, home: Path, **kwargs):
    """`make_world(home, **kwargs)` with its settings in the environment for the test, its CRM
    server stopped after."""
    with _in_env(monkeypatch, make_world(home, **kwargs)) as w:
        yield w


@contextlib.contextmanager
def _in_env(monkeypatch, w: World):
    """A served world's settings in the environment for the block, its CRM server stopped after."""
    for k, v in w.env.items():
        monkeypatch.setenv(k, v)
    try:
        yield w
    finally:
        w.server.stop()


@contextlib.contextmanager
def _exclusively(lock_file: Path):
    """Only one process of the session (one xdist worker) in the block at a time."""
    with open(lock_file, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def prepared_world(tmp_path_factory, name: str, prepare: Callable[[World], None],
                   cfg: WorldConfig = SMALL_WORLD, **world_kwargs) -> Path:
    """The home of a file-backed world (SQLite ERP, DuckDB warehouse) made and `prepare`d (its
    settings in the environment meanwhile) once per test session: the first test of any xdist
    worker to ask builds it, the others wait for it. Tests never use it directly: each takes a
    copy of its own (`copied_world_in_env`), so the tests stay independent of each other.
    `world_kwargs` go to `make_world` (e.g. `seed_days`). `prepare` may keep files of its own in
    the home's parent folder (what it recorded while preparing); the copies take the home only."""
    base = tmp_path_factory.getbasetemp()
    root = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / f"prepared-{name}"
    with _exclusively(root.parent / f"{root.name}.lock"):
        if not (root / "READY").exists():
            shutil.rmtree(root, ignore_errors=True)
            with pytest.MonkeyPatch.context() as mp, world_in_env(mp, root / "home", cfg=cfg, **world_kwargs) as w:
                prepare(w)
            _checkpointed(root / "home" / "warehouse.duckdb")
            (root / "READY").write_text(name)
    return root / "home"


def _checkpointed(warehouse: Path) -> None:
    """Open and close the prepared warehouse in a process of its own: that fails if any process
    (this one included) still holds it — a copy could then be torn — and folds its WAL in."""
    probe = subprocess.run([sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()",
                            str(warehouse)], capture_output=True, text=True)
    assert probe.returncode == 0, f"the prepared warehouse is still open: {probe.stderr.strip()[-300:]}"


@contextlib.contextmanager
def copied_world_in_env(monkeypatch, template_home: Path, home: Path, cfg: WorldConfig = SMALL_WORLD):
    """A copy of a prepared world's whole home (sources, landing folder, warehouse, Dagster
    instance; nothing in it names its own path) with a CRM server of its own, its settings in the
    environment for the test."""
    shutil.copytree(template_home, home)
    paths = WorldPaths(home / "sandbox", f"sqlite:///{home / 'sandbox' / 'erp.sqlite'}", home / "landing")
    with _in_env(monkeypatch, _serve(home, cfg, paths, None)) as w:
        yield w


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
