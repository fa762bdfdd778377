"""Worlds lived the way the demo lives them, made once per test session and shared by the judges
that only read them (reconciliation precision, the ROI recomputation, the ROI source counts).

A life: the history before go-live reconciled by one backfill, then the company lives a few
days at a time and Trueup's nightly run catches each stretch up (publishing orders, holding some
for a person). While it lives, what a judge can only see at the time is recorded beside it:
  - before each run, the rows the sources offer for the days it covers (`SourceLog`);
  - after each run, the reconciliation judge's findings (what was open when the run ended).
Each test gets a copy of its own of the lived home (`copied_world_in_env`), so it may write.
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import pickle
from pathlib import Path

import pytest

from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from trueup.orchestration.runner import run_job
from trueup.sandbox.generator.config import DEFAULT_DEFECT_RATES, WorldConfig
from trueup.sandbox.generator.world import advance_world
from tests.recon_truth import Truth, ledger_waiting, truth
from tests.roi_source_counts import SourceLog
from tests.world_fixtures import SMALL_WORLD, World, copied_world_in_env, prepared_world


@dataclasses.dataclass(frozen=True)
class Life:
    """How a world is lived: its seed and size, go-live, and how many days each run catches up."""
    seed: int
    scale: float
    days: int
    golive_day: int
    per_run: int
    #: the defect rates as a multiple of the generator's defaults (capped at 30 %)
    defects_x: int

    @property
    def name(self) -> str:
        return (f"lived-seed{self.seed}-scale{self.scale}-{self.days}d-golive{self.golive_day}"
                f"-per{self.per_run}-defects{self.defects_x}x")

    def config(self) -> WorldConfig:
        rates = {k: min(0.3, self.defects_x * v) for k, v in DEFAULT_DEFECT_RATES.items()}
        return dataclasses.replace(SMALL_WORLD, seed=self.seed, scale=self.scale, days=self.days,
                                   schema_drift_days=(), defect_rates=rates,
                                   golive_date=SMALL_WORLD.start_date + dt.timedelta(days=self.golive_day))


#: the world three judges share: seed 11, 20 days, go-live on day 10, five days per run, three times
#: the usual defect rates (more breaks, more quarantined rows, more of them on the same records)
SHARED = Life(seed=11, scale=1.0, days=20, golive_day=10, per_run=5, defects_x=3)
#: the second world both judges read: seed 23, twice the size, go-live on day 7, the rest of its two
#: weeks caught up in two runs, three times the usual defect rates (a world lived once serves both:
#: living one costs ~30 s of CPU)
SECOND = Life(seed=23, scale=2.0, days=14, golive_day=7, per_run=4, defects_x=3)


@dataclasses.dataclass
class Lived:
    world: World
    life: Life
    cfg: WorldConfig
    nights: list[dt.date]        # the last business day of each run
    judged: list[Truth]          # the judge's findings after each run, in order
    sources: SourceLog           # what the sources offered for each day before the run covering it

    @property
    def publish_nights(self) -> list[dt.date]:
        return [n for n in self.nights if n >= self.cfg.golive]


_RECORD = "lived.pickle"   # beside the world's home: nights and judge snapshots
_SOURCES = "source_log.json"


def _living(life: Life):
    """The `prepare` of a prepared world: live it, recording what the judges need."""
    def prepare(w: World) -> None:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("TRUEUP_PUBLISH_FROM", w.cfg.golive.isoformat())
            settings = load_settings()
            sources = SourceLog(w.paths.root, w.paths.erp_url, w.paths.landing_dir, settings.timezone)
            all_days = w.days()
            nights: list[dt.date] = []
            judged: list[Truth] = []

            def run(chunk: list[dt.date]) -> None:
                sources.snapshot(chunk)
                outcome = run_job(settings, "nightly_sync", chunk[0], chunk[-1])
                assert outcome.success, outcome.error
                nights.append(chunk[-1])
                wh = Warehouse(settings.warehouse_url)
                try:   # what the judge says was open when this run ended
                    judged.append(truth(w.paths, w.paths.erp_url, chunk[-1], w.cfg.golive,
                                        [n for n in nights if n >= w.cfg.golive], waiting=ledger_waiting(wh)))
                finally:
                    wh.dispose()

            run(all_days[:life.golive_day])
            for i in range(life.golive_day, life.days, life.per_run):
                chunk = all_days[i:i + life.per_run]
                advance_world(w.paths, len(chunk))
                run(chunk)
            sources.save(w.home.parent / _SOURCES)
            (w.home.parent / _RECORD).write_bytes(pickle.dumps({"nights": nights, "judged": judged}))
    return prepare


@contextlib.contextmanager
def lived_world(tmp_path_factory, tmp_path: Path, monkeypatch, life: Life = SHARED):
    """A copy of its own of `life` lived once for the session, its settings in the environment
    (go-live included) and its CRM served, with what the judges recorded while it lived."""
    cfg = life.config()
    template = prepared_world(tmp_path_factory, life.name, _living(life), cfg=cfg, seed_days=life.golive_day)
    record = pickle.loads((template.parent / _RECORD).read_bytes())
    with copied_world_in_env(monkeypatch, template, tmp_path / "home", cfg=cfg) as w:
        monkeypatch.setenv("TRUEUP_PUBLISH_FROM", cfg.golive.isoformat())
        sources = SourceLog(w.paths.root, w.paths.erp_url, w.paths.landing_dir,
                            load_settings().timezone).load(template.parent / _SOURCES)
        yield Lived(w, life, cfg, record["nights"], record["judged"], sources)
