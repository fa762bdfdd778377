"""The `trueup` command: sandbox control, the demo, and (later) nightly runs and backfills.

Commands print what they did in human terms. Expected failures end with one line on
stderr and a non-zero exit; set TRUEUP_DEBUG=1 to see tracebacks.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time
from typing import Callable

from orchestration.config import ConfigError, Settings, load_settings


class CliError(RuntimeError):
    """An expected failure: the message is the whole story."""


def _world_paths(settings: Settings):
    from sandbox.generator.world import WorldPaths

    return WorldPaths(settings.sandbox.root, settings.erp_url, settings.landing_dir)


# -- sandbox -----------------------------------------------------------------------------
def cmd_sandbox_up(args, settings: Settings) -> None:
    from sandbox.control import sandbox_up

    print(sandbox_up(settings))


def cmd_sandbox_down(args, settings: Settings) -> None:
    from sandbox.control import sandbox_down

    print(sandbox_down(settings))


def cmd_sandbox_seed(args, settings: Settings) -> None:
    from sandbox.generator.config import WorldConfig
    from sandbox.generator.world import seed_world
    from sandbox.world_report import format_report

    cfg = WorldConfig(seed=args.seed, scale=args.scale, start_date=args.start, days=args.days,
                      golive_date=args.golive)
    t0 = time.monotonic()
    paths = _world_paths(settings)
    days = _reseed(settings, cfg)
    print(f"Seeded {len(days)} days ({days[0].date} .. {days[-1].date}) in {time.monotonic() - t0:.1f}s")
    print(format_report(paths))


def cmd_sandbox_reexport(args, settings: Settings) -> None:
    from sandbox.generator.world import reexport_day

    folder = reexport_day(_world_paths(settings), args.date)
    print(f"re-exported {args.date} from the ERP database into {folder}")


def cmd_sandbox_advance(args, settings: Settings) -> None:
    from sandbox.generator.world import WorldNotSeeded, advance_world

    try:
        for d in advance_world(_world_paths(settings), days=args.days):
            crm = ", ".join(f"{v} {k}" for k, v in d.crm_changes.items())
            erp = ", ".join(f"{v} {k}" for k, v in d.erp_inserts.items())
            exp = ", ".join(f"{v} {k}" for k, v in d.export_rows.items())
            print(f"{d.date}: CRM changed {crm}; clerks keyed {erp}; export holds {exp}")
    except WorldNotSeeded as exc:
        raise CliError(str(exc)) from None


def cmd_sandbox_status(args, settings: Settings) -> None:
    from sandbox.control import is_answering, running_pid
    from sandbox.world_report import format_report

    pid = running_pid(settings)
    state = "running" if pid and is_answering(settings) else "not running"
    print(f"sandbox CRM {state} at {settings.crm_base_url}" + (f" (pid {pid})" if pid else ""))
    print(format_report(_world_paths(settings)))


# -- runs --------------------------------------------------------------------------------
def run_summary(settings: Settings, run_id: str) -> str:
    from orchestration.run_report import run_summary as summary

    return summary(settings, run_id)


def _print_run(settings: Settings, outcome) -> None:
    from orchestration.run_report import run_summary

    print(f"run {outcome.run_id} ({outcome.partitions}): {'success' if outcome.success else 'FAILED'}")
    print(run_summary(settings, outcome.run_id))
    if not outcome.success:
        raise CliError(f"{outcome.error or 'run failed'} (run {outcome.run_id}; full log: {outcome.log_path})")


def cmd_nightly(args, settings: Settings) -> None:
    from orchestration.runner import run_job
    from sandbox.control import require_running

    require_running(settings)   # reachable, and the token accepted: fail in seconds, not after retries
    day = args.date or (dt.date.today() - dt.timedelta(days=1))
    _print_run(settings, run_job(settings, "nightly_sync", day))


def cmd_backfill(args, settings: Settings) -> None:
    from orchestration.runner import run_job
    from sandbox.control import require_running

    require_running(settings)
    start, end = args.start, args.end
    if start is None or end is None:
        world = settings.sandbox.read_world()
        if world is None:
            raise CliError("no dates given and no seeded sandbox world: pass --start and --end")
        start = start or dt.date.fromisoformat(world["start_date"])
        end = end or dt.date.fromisoformat(world["through_date"])
    if end < start:
        raise CliError(f"--end {end} is before --start {start}")
    _print_run(settings, run_job(settings, "nightly_sync", start, end))


def cmd_migrate(args, settings: Settings) -> None:
    """Bring the warehouse's layout up to date (re-runnable; see assets/migrations.py)."""
    from assets.migrations import migrate
    from connectors.warehouse import Warehouse

    wh = Warehouse(settings.warehouse_url)
    try:
        for line in migrate(wh):
            print(f"migration {line}")
    finally:
        wh.dispose()


def cmd_replay(args, settings: Settings) -> None:
    """Through the Dagster instance, like the nightly runs: the replay shows in the UI."""
    from orchestration.runner import run_unpartitioned_job

    outcome = run_unpartitioned_job(settings, "replay_quarantine",
                                    run_config={"ops": {"replay_quarantine_op": {"config": {"actor": _actor(args)}}}})
    if not outcome.success:
        raise CliError(outcome.error or "replay failed")
    print(f"replay run {outcome.run_id}: {outcome.summary}")


def cmd_approve(args, settings: Settings) -> None:
    from orchestration.runner import run_unpartitioned_job

    outcome = run_unpartitioned_job(settings, "approve_write", run_config={"ops": {"approve_write_op": {"config": {
        "idempotency_key": args.key, "actor": _actor(args)}}}})
    if not outcome.success:
        raise CliError(outcome.error or "approval failed")
    print(outcome.summary)


def cmd_quarantine_list(args, settings: Settings) -> None:
    from connectors.warehouse import Warehouse
    from quality.store import open_quarantine

    df = open_quarantine(Warehouse(settings.warehouse_url), args.contract)
    if df.empty:
        print("no open quarantine entries")
        return
    for r in df.itertuples():
        print(f"{r.quarantine_id}  {r.contract:<26} {r.business_key:<16} attempts {r.attempts}  "
              f"{r.failed_expectations}")
    print(f"{len(df)} open")


def cmd_quarantine_discard(args, settings: Settings) -> None:
    from connectors.warehouse import Warehouse
    from quality.store import resolve

    n = resolve(Warehouse(settings.warehouse_url), [args.id], "discarded", _actor(args), args.reason)
    if not n:
        raise CliError(f"no open quarantine entry {args.id}")
    print(f"discarded {args.id} (by {_actor(args)}: {args.reason})")


def cmd_writes_list(args, settings: Settings) -> None:
    from assets.publish.ledger import waiting
    from connectors.warehouse import Warehouse

    wh = Warehouse(settings.warehouse_url)
    try:
        df = waiting(wh)
    finally:
        wh.dispose()
    if df.empty:
        print("no writes waiting for a person")
        return
    for r in df.itertuples():
        amount = f"{r.amount} {r.currency}" if r.amount else "-"
        print(f"{r.idempotency_key:<34} {r.state:<17} {amount:>18}  {r.age_days:5.1f} days  {r.hold_reason or ''}")
    print(f"{len(df)} waiting; `trueup approve KEY` (awaiting approval), `trueup writes release KEY` or "
          f"`trueup writes link KEY --order SO-…` (held)")


def _writes_decision(args, settings: Settings, fn) -> None:
    from connectors.warehouse import Warehouse

    wh = Warehouse(settings.warehouse_url)
    try:
        print(fn(wh))
    except LookupError as exc:
        raise CliError(str(exc)) from None
    finally:
        wh.dispose()


def cmd_writes_release(args, settings: Settings) -> None:
    from assets.publish.ledger import decide

    _writes_decision(args, settings, lambda wh: decide(wh, args.key, _actor(args), "release")
                     + "; the next publish run sends it")


def cmd_writes_link(args, settings: Settings) -> None:
    import re

    from assets.publish.ledger import decide

    if not re.fullmatch(r"SO-\d+", args.order):
        raise CliError(f"--order {args.order!r} is not an ERP order number (SO-<digits>)")
    _writes_decision(args, settings, lambda wh: decide(wh, args.key, _actor(args), "link", args.order)
                     + "; nothing will be sent for it")


def cmd_writes_undo(args, settings: Settings) -> None:
    from assets.publish.ledger import undo

    _writes_decision(args, settings, lambda wh: undo(wh, args.key, _actor(args)))


def _actor(args) -> str:
    import getpass

    return getattr(args, "actor", None) or os.environ.get("TRUEUP_ACTOR") or getpass.getuser()


def cmd_ui(args, settings: Settings) -> None:
    import subprocess

    from orchestration.runner import ensure_dagster_home

    ensure_dagster_home(settings)
    print(f"Dagster UI on http://127.0.0.1:{args.port} (DAGSTER_HOME={settings.dagster_home}); Ctrl-C stops it")
    subprocess.run([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
                    "-p", str(args.port)], check=False)


# -- demo --------------------------------------------------------------------------------
def _reseed(settings: Settings, cfg, days: int | None = None) -> list:
    """Seed a fresh world (its first `days` days; default all); a running sandbox CRM is
    restarted so it serves the new store."""
    from sandbox.control import running_pid, sandbox_down, sandbox_up
    from sandbox.generator.world import seed_world

    was_running = settings.uses_sandbox_crm and running_pid(settings) is not None
    if was_running:
        sandbox_down(settings)
    summaries = seed_world(_world_paths(settings), cfg, days=days)
    if was_running:
        sandbox_up(settings)
    return summaries


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
        from orchestration.progress import RunProgress

        self.settings, self.paths = settings, paths
        self.log = settings.home / "logs" / "demo.log"
        self.log.unlink(missing_ok=True)
        self.progress = RunProgress(log_path=self.log)
        self.count = 0

    def run(self, first: dt.date, last: dt.date):
        outcome = self.once(first, last)
        if outcome.success:
            return outcome
        from orchestration.run_report import rejected_exports
        from sandbox.generator.world import reexport_day

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
        from orchestration.run_report import run_digest
        from orchestration.runner import run_job

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
    from orchestration.run_report import demo_summary
    from sandbox.control import sandbox_up
    from sandbox.generator.config import WorldConfig
    from sandbox.generator.world import advance_world
    from sandbox.world_report import format_report

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
    _reseed(settings, cfg, days=baseline)
    settings = load_settings()  # partitions and go-live follow the world just seeded
    print(sandbox_up(settings))
    print(f"Seeded {baseline} business days in {time.monotonic() - t0:.1f}s")
    paths = _world_paths(settings)
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


# -- wiring ------------------------------------------------------------------------------
def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return n


def _at_least_two(value: str) -> int:
    n = _positive_int(value)
    if n < 2:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 2 (a baseline day and a day after go-live)")
    return n


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a number above 0")
    return x


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trueup", description="Trueup: CRM/ERP sync, quality gates and reconciliation")
    sub = p.add_subparsers(dest="command", required=True)

    sb = sub.add_parser("sandbox", help="the local sandbox CRM and ERP").add_subparsers(dest="action", required=True)
    sb.add_parser("up", help="start the sandbox CRM server on 127.0.0.1").set_defaults(func=cmd_sandbox_up)
    sb.add_parser("down", help="stop the sandbox CRM server").set_defaults(func=cmd_sandbox_down)
    sb.add_parser("status", help="is it running, and what does the world hold").set_defaults(func=cmd_sandbox_status)
    seed = sb.add_parser("seed", help="generate a fresh world (replaces the current one)")
    seed.add_argument("--seed", type=int, default=7, help="random seed (same seed, same world)")
    seed.add_argument("--scale", type=_positive_float, default=1.0, help="size multiplier (1.0 ≈ 600 deals)")
    seed.add_argument("--start", type=_date, default=dt.date(2026, 9, 1), help="first day of history")
    seed.add_argument("--days", type=_positive_int, default=61, help="days of history")
    seed.add_argument("--golive", type=_date, default=None, help="go-live date (default: mid-history)")
    seed.set_defaults(func=cmd_sandbox_seed)
    rex = sb.add_parser("reexport", help="rewrite one day's ERP export correctly from the ERP database")
    rex.add_argument("--date", type=_date, required=True)
    rex.set_defaults(func=cmd_sandbox_reexport)
    adv = sb.add_parser("advance", help="apply the next business day(s) to the world")
    adv.add_argument("--days", type=_positive_int, default=1)
    adv.set_defaults(func=cmd_sandbox_advance)

    nightly = sub.add_parser("nightly", help="run the nightly job for one business day")
    nightly.add_argument("--date", type=_date, default=None, help="business day (default: yesterday)")
    nightly.set_defaults(func=cmd_nightly)
    backfill = sub.add_parser("backfill", help="run the nightly job for a range of days, in one run")
    backfill.add_argument("--start", type=_date, default=None, help="first day (default: start of seeded history)")
    backfill.add_argument("--end", type=_date, default=None, help="last day (default: end of seeded history)")
    backfill.set_defaults(func=cmd_backfill)
    sub.add_parser("migrate", help="bring the warehouse's tables to the current layout (safe to run again)"
                   ).set_defaults(func=cmd_migrate)
    rp = sub.add_parser("replay", help="re-validate open quarantined rows against their current source values")
    rp.add_argument("--actor", default=None, help="who runs it (default: $TRUEUP_ACTOR or the login name)")
    rp.set_defaults(func=cmd_replay)
    ap = sub.add_parser("approve", help="release a write held for approval (e.g. a deal above the threshold)")
    ap.add_argument("key", help="idempotency key, e.g. erp-order:crm-deal:20000123")
    ap.add_argument("--actor", default=None)
    ap.set_defaults(func=cmd_approve)
    qu = sub.add_parser("quarantine", help="inspect or discard quarantined rows").add_subparsers(
        dest="action", required=True)
    ql = qu.add_parser("list", help="open entries")
    ql.add_argument("--contract", default=None)
    ql.set_defaults(func=cmd_quarantine_list)
    qd = qu.add_parser("discard", help="discard one entry: an explicit, recorded decision")
    qd.add_argument("id", help="quarantine_id (see `trueup quarantine list`)")
    qd.add_argument("--reason", required=True)
    qd.add_argument("--actor", default=None)
    qd.set_defaults(func=cmd_quarantine_discard)
    wr = sub.add_parser("writes", help="writes waiting for a person: list, release, link, undo").add_subparsers(
        dest="action", required=True)
    wr.add_parser("list", help="held and awaiting-approval writes, with amount and age").set_defaults(
        func=cmd_writes_list)
    wrr = wr.add_parser("release", help="send a held write after all (a recorded decision)")
    wrr.add_argument("key", help="idempotency key, e.g. erp-order:crm-deal:20000123")
    wrr.add_argument("--actor", default=None)
    wrr.set_defaults(func=cmd_writes_release)
    wrl = wr.add_parser("link", help="a held write is an existing ERP order: record it, send nothing")
    wrl.add_argument("key")
    wrl.add_argument("--order", required=True, help="the ERP order number, e.g. SO-000123")
    wrl.add_argument("--actor", default=None)
    wrl.set_defaults(func=cmd_writes_link)
    wru = wr.add_parser("undo", help="take back a release or a link not acted on yet")
    wru.add_argument("key")
    wru.add_argument("--actor", default=None)
    wru.set_defaults(func=cmd_writes_undo)
    ui = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    demo = sub.add_parser("demo", help="bring the sandbox up, seed it and run Trueup end to end")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--scale", type=_positive_float, default=1.0)
    demo.add_argument("--days", type=_at_least_two, default=61,
                      help="days of history: the first half is the baseline, Trueup posts from the middle")
    demo.add_argument("--days-per-run", type=_positive_int, default=7,
                      help="nights per backfill run after go-live (default 7: the company lives a week, then "
                           "Trueup backfills it; a short tail joins the last run)")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if not os.environ.get("TRUEUP_DEBUG"):
        import warnings

        # Dagster flags beta/superseded APIs on every definitions load; users cannot act on it
        warnings.filterwarnings("ignore", message=".*(beta|superseded|deprecated).*")
    args = build_parser().parse_args(argv)
    func: Callable = args.func
    # TRUEUP_HOME holds the warehouse (contact PII), the ERP copy, logs and the sandbox token:
    # everything this process creates is private to its user (folders 0700, files 0600)
    os.umask(0o077)
    try:
        settings = load_settings()
        settings.make_home_private()
        func(args, settings)
        return 0
    except KeyboardInterrupt:
        print("trueup: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's job is to turn failures into one line
        if os.environ.get("TRUEUP_DEBUG"):
            raise
        print(f"trueup: error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    from orchestration.runner import RunRefused
    from sandbox.control import SandboxError

    expected = (CliError, ConfigError, SandboxError, RunRefused)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, expected):
        return text
    return f"{type(exc).__name__}: {text} (set TRUEUP_DEBUG=1 for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
