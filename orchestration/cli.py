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
        raise CliError(outcome.error or "run failed")


def cmd_nightly(args, settings: Settings) -> None:
    from orchestration.runner import run_job
    from sandbox.control import require_running

    if settings.uses_sandbox_crm:
        require_running(settings)
    day = args.date or (dt.date.today() - dt.timedelta(days=1))
    _print_run(settings, run_job(settings, "nightly_sync", day))


def cmd_backfill(args, settings: Settings) -> None:
    from orchestration.runner import run_job
    from sandbox.control import require_running

    if settings.uses_sandbox_crm:
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
def _reseed(settings: Settings, cfg) -> list:
    """Seed a fresh world; a running sandbox CRM is restarted so it serves the new store."""
    from sandbox.control import running_pid, sandbox_down, sandbox_up
    from sandbox.generator.world import seed_world

    was_running = settings.uses_sandbox_crm and running_pid(settings) is not None
    if was_running:
        sandbox_down(settings)
    days = seed_world(_world_paths(settings), cfg)
    if was_running:
        sandbox_up(settings)
    return days


def cmd_demo(args, settings: Settings) -> None:
    from orchestration.run_report import rejected_exports
    from orchestration.runner import run_job
    from sandbox.control import sandbox_up
    from sandbox.generator.config import WorldConfig
    from sandbox.generator.world import reexport_day
    from sandbox.world_report import format_report

    print("== 1. Sandbox CRM and ERP: two months of company history")
    t0 = time.monotonic()
    days = _reseed(settings, WorldConfig(seed=args.seed, scale=args.scale))
    print(sandbox_up(settings))
    print(f"Seeded {len(days)} business days in {time.monotonic() - t0:.1f}s")
    paths = _world_paths(settings)
    print(format_report(paths))

    first, last = days[0].date, days[-1].date
    print(f"\n== 2. Trueup nightly_sync for {first} .. {last} (one backfill run, visible in the UI)")
    t0 = time.monotonic()
    outcome = run_job(settings, "nightly_sync", first, last, extra_tags={"trueup/trigger": "demo"})
    print(f"run {outcome.run_id}: {'success' if outcome.success else 'finished with failures'} "
          f"in {time.monotonic() - t0:.1f}s")
    print(run_summary(settings, outcome.run_id))

    rejected = rejected_exports(settings)
    if rejected:
        print(f"\n== 3. {len(rejected)} ERP export(s) were rejected whole, nothing of them landed:")
        for day, reason in rejected:
            print(f"   {day}: {reason}")
        print("   The ERP team re-exports those days; Trueup loads them on the next run:")
        for day, _ in rejected:
            reexport_day(paths, dt.date.fromisoformat(day))
            rerun = run_job(settings, "nightly_sync", dt.date.fromisoformat(day),
                            extra_tags={"trueup/trigger": "demo"})
            print(f"   {day}: re-run {'loaded' if rerun.success else 'FAILED: ' + str(rerun.error)}")
            if not rerun.success:
                raise CliError(f"re-run of {day} failed: {rerun.error}")
    elif not outcome.success:
        raise CliError(outcome.error or "run failed")
    from orchestration.run_report import demo_summary

    print(demo_summary(settings))
    print("\nOpen the Dagster UI with `make ui` to see the assets, runs and checks.")


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
    ui = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)

    demo = sub.add_parser("demo", help="bring the sandbox up, seed it and run Trueup end to end")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--scale", type=_positive_float, default=1.0)
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
    try:
        settings = load_settings()
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
    from sandbox.control import SandboxError

    expected = (CliError, ConfigError, SandboxError)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, expected):
        return text
    return f"{type(exc).__name__}: {text} (set TRUEUP_DEBUG=1 for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
