"""`trueup demo`: the story of a company before and after Trueup, told by running the same
commands a user has — the sandbox seeds and lives its world, Trueup's nightly runs follow as
backfills — with a line per finished step and a closing summary. A command group of the
`trueup` CLI, registered through the `trueup.commands` entry points."""
from __future__ import annotations

import argparse
import datetime as dt
import os
import time

from trueup.orchestration.commands import CliError, positive_float, positive_int
from trueup.orchestration.config import Settings, load_settings
from trueup.sandbox.commands import reseed, world_paths


def _chunks(first: dt.date, last: dt.date, size: int) -> list[tuple[dt.date, dt.date]]:
    """first..last in runs of `size` days; a tail shorter than half a run joins the one before."""
    out, day = [], first
    while day <= last:
        end = min(day + dt.timedelta(days=size - 1), last)
        out.append((day, end))
        day = end + dt.timedelta(days=1)
    if len(out) > 1 and (out[-1][1] - out[-1][0]).days + 1 < (size + 1) // 2:
        out[-2:] = [(out[-2][0], out[-1][1])]
    return out


def _span(first: dt.date, last: dt.date) -> str:
    return str(first) if first == last else f"{first} .. {last}"


def _days_lived(summaries: list) -> str:
    """One line for what the company did on some business days (sandbox DaySummary list)."""
    def total(attr: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for d in summaries:
            for k, v in getattr(d, attr).items():
                out[k] = out.get(k, 0) + v
        return out

    crm, erp, exp = total("crm_changes"), total("erp_inserts"), total("export_rows")
    return (f"CRM changed {', '.join(f'{v} {k}' for k, v in crm.items())}; "
            f"clerks keyed {', '.join(f'{v} {k}' for k, v in erp.items())}; "
            f"exports hold {', '.join(f'{v} {k}' for k, v in exp.items())}")


class _DemoRuns:
    """The demo's nightly_sync runs: each a Dagster run with live progress; a run stopped by
    rejected ERP exports is followed by the ERP team's re-export and a re-run of its days."""

    def __init__(self, settings: Settings, paths) -> None:
        from trueup.orchestration.progress import RunProgress

        self.settings, self.paths = settings, paths
        self.log = settings.home / "logs" / "demo.log"
        self.log.unlink(missing_ok=True)
        self.progress = RunProgress(log_path=self.log)
        self.count = 0

    def run(self, first: dt.date, last: dt.date):
        outcome = self.once(first, last)
        if outcome.success:
            return outcome
        from trueup.orchestration.run_report import rejected_exports
        from trueup.sandbox.generator.world import reexport_day

        rejected = [(str(d), why) for d, why in rejected_exports(self.settings) if str(first) <= str(d) <= str(last)]
        if not rejected:
            raise CliError(outcome.error or "run failed")
        print(f"   {len(rejected)} ERP export(s) were rejected whole (nothing of them landed), and the "
              f"steps after them did not run:")
        for day, reason in rejected:
            print(f"     {day}: {reason}")
        print(f"   The ERP team re-exports {', '.join(d for d, _ in rejected)}; "
              f"Trueup runs {_span(first, last)} again:")
        for day, _ in rejected:
            reexport_day(self.paths, dt.date.fromisoformat(day))
        outcome = self.once(first, last)
        if not outcome.success:
            raise CliError(f"re-run of {_span(first, last)} failed: {outcome.error}")
        return outcome

    def once(self, first: dt.date, last: dt.date, job: str = "nightly_sync"):
        from trueup.orchestration.run_report import run_digest
        from trueup.orchestration.runner import run_job

        self.count += 1
        days = (last - first).days + 1
        print(f"   run {self.count}: {job} {_span(first, last)} ({days} day{'s' * (days > 1)})", flush=True)
        t0 = time.monotonic()
        outcome = run_job(self.settings, job, first, last, extra_tags={"trueup/trigger": "demo"},
                          progress=self.progress)
        p = self.progress
        steps = f"{len(p.steps) - len(p.failed)} of {p.planned or len(p.steps)} steps"
        extra = "".join([f", {len(p.failed)} failed" if p.failed else "",
                         f", {p.not_run} not run" if p.not_run else ""])
        state = "success" if outcome.success else "FAILED"
        print(f"   run {self.count} {state}: {steps}{extra} in {time.monotonic() - t0:.1f}s "
              f"(Dagster run {outcome.run_id[:8]})")
        print(f"   {run_digest(self.settings, outcome.run_id, loads=job != 'reconcile')}", flush=True)
        return outcome


def cmd_demo(args, settings: Settings) -> None:
    from trueup.orchestration.run_report import demo_summary
    from trueup.sandbox.control import sandbox_up
    from trueup.sandbox.generator.config import WorldConfig
    from trueup.sandbox.generator.world import advance_world
    from trueup.sandbox.world_report import format_report

    t_start = time.monotonic()
    golive_env = os.environ.get("TRUEUP_PUBLISH_FROM")
    cfg = WorldConfig(seed=args.seed, scale=args.scale, days=args.days,
                      golive_date=settings.publish_from if golive_env else None)
    first_day, golive = cfg.start_date, cfg.golive
    last_day = first_day + dt.timedelta(days=cfg.days - 1)
    if not first_day < golive <= last_day:
        raise CliError(f"TRUEUP_PUBLISH_FROM={golive} is outside the demo's history ({first_day} .. {last_day})")
    baseline = (golive - first_day).days

    print(f"== 1. The company before Trueup: {_span(first_day, golive - dt.timedelta(days=1))}, "
          f"{baseline} days of manual operation (clerks key every ERP order by hand)")
    t0 = time.monotonic()
    reseed(settings, cfg, days=baseline)
    settings = load_settings()  # partitions and go-live follow the world just seeded
    print(sandbox_up(settings))
    print(f"Seeded {baseline} business days in {time.monotonic() - t0:.1f}s")
    paths = world_paths(settings)
    print(format_report(paths))
    runs = _DemoRuns(settings, paths)

    print(f"\n== 2. Trueup arrives: one backfill run loads, checks and reconciles those {baseline} days "
          f"(nothing is posted: publishing starts at go-live, {golive})")
    runs.run(first_day, golive - dt.timedelta(days=1))

    chunks = _chunks(golive, last_day, args.days_per_run)
    print(f"\n== 3. Go-live {golive}: the nightly runs of {_span(golive, last_day)} as a backfill in "
          f"{len(chunks)} run{'s' * (len(chunks) > 1)}; before each, the company lives those days")
    for first, last in chunks:
        lived = advance_world(paths, days=(last - first).days + 1)
        print(f"   The company lives {_span(first, last)}: {_days_lived(lived)}")
        runs.run(first, last)

    print(f"\n== 4. 06:00 the next morning: the reconcile job (its daily schedule) checks {last_day} again, "
          f"after the night's publishing")
    outcome = runs.once(last_day, last_day, job="reconcile")
    if not outcome.success:
        raise CliError(outcome.error or "reconciliation failed")

    print(demo_summary(settings))
    print(f"\nDemo finished in {time.monotonic() - t_start:.0f}s. The runs' own output (dbt, Dagster) is in "
          f"{runs.log}.")
    print("Open the Dagster UI with `make ui` to see the assets, runs and checks.")


def _at_least_two(value: str) -> int:
    n = positive_int(value)
    if n < 2:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 2 (a baseline day and a day after go-live)")
    return n


def register(sub) -> None:
    """Add `trueup demo` to the CLI's subparsers."""
    demo = sub.add_parser("demo", help="bring the sandbox up, seed it and run Trueup end to end")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--scale", type=positive_float, default=1.0)
    demo.add_argument("--days", type=_at_least_two, default=61,
                      help="days of history: the first half is the baseline, Trueup posts from the middle")
    demo.add_argument("--days-per-run", type=positive_int, default=7,
                      help="nights per backfill run after go-live (default 7: the company lives a week, then "
                           "Trueup backfills it; a short tail joins the last run)")
    demo.set_defaults(func=cmd_demo)
