"""`trueup sandbox up|down|status|seed|reexport|advance`: the local sandbox CRM and ERP.
A command group of the `trueup` CLI, registered through the `trueup.commands` entry points."""
from __future__ import annotations

import datetime as dt
import time

from trueup.orchestration.commands import CliError, iso_date, positive_float, positive_int
from trueup.orchestration.config import Settings


def world_paths(settings: Settings):
    from trueup.sandbox.generator.world import WorldPaths
    from trueup.sandbox.paths import SandboxPaths

    return WorldPaths(SandboxPaths.of(settings).root, settings.erp_url, settings.landing_dir)


def reseed(settings: Settings, cfg, days: int | None = None) -> list:
    """Seed a fresh world (its first `days` days; default all); a running sandbox CRM is
    restarted so it serves the new store. The world's dates and the sandbox CRM's token file
    land in the TRUEUP_HOME's settings file, where Trueup reads them."""
    from trueup.sandbox.control import running_pid, sandbox_down, sandbox_up
    from trueup.sandbox.generator.world import seed_world
    from trueup.sandbox.paths import SandboxPaths

    was_running = settings.uses_sandbox_crm and running_pid(settings) is not None
    if was_running:
        sandbox_down(settings)
    summaries = seed_world(world_paths(settings), cfg, days=days)
    SandboxPaths.of(settings).sandbox_token()
    if was_running:
        sandbox_up(settings)
    return summaries


def cmd_sandbox_up(args, settings: Settings) -> None:
    from trueup.sandbox.control import sandbox_up

    print(sandbox_up(settings))


def cmd_sandbox_down(args, settings: Settings) -> None:
    from trueup.sandbox.control import sandbox_down

    print(sandbox_down(settings))


def cmd_sandbox_seed(args, settings: Settings) -> None:
    from trueup.sandbox.generator.config import WorldConfig
    from trueup.sandbox.world_report import format_report

    cfg = WorldConfig(seed=args.seed, scale=args.scale, start_date=args.start, days=args.days,
                      golive_date=args.golive)
    t0 = time.monotonic()
    paths = world_paths(settings)
    days = reseed(settings, cfg)
    print(f"Seeded {len(days)} days ({days[0].date} .. {days[-1].date}) in {time.monotonic() - t0:.1f}s")
    print(format_report(paths))


def cmd_sandbox_reexport(args, settings: Settings) -> None:
    from trueup.sandbox.generator.world import reexport_day

    folder = reexport_day(world_paths(settings), args.date)
    print(f"re-exported {args.date} from the ERP database into {folder}")


def cmd_sandbox_advance(args, settings: Settings) -> None:
    from trueup.sandbox.generator.world import WorldNotSeeded, advance_world

    try:
        for d in advance_world(world_paths(settings), days=args.days):
            crm = ", ".join(f"{v} {k}" for k, v in d.crm_changes.items())
            erp = ", ".join(f"{v} {k}" for k, v in d.erp_inserts.items())
            exp = ", ".join(f"{v} {k}" for k, v in d.export_rows.items())
            print(f"{d.date}: CRM changed {crm}; clerks keyed {erp}; export holds {exp}")
    except WorldNotSeeded as exc:
        raise CliError(str(exc)) from None


def cmd_sandbox_status(args, settings: Settings) -> None:
    from trueup.sandbox.control import is_answering, running_pid
    from trueup.sandbox.world_report import format_report

    pid = running_pid(settings)
    state = "running" if pid and is_answering(settings) else "not running"
    print(f"sandbox CRM {state} at {settings.crm_base_url}" + (f" (pid {pid})" if pid else ""))
    print(format_report(world_paths(settings)))


def register(sub) -> None:
    """Add `trueup sandbox …` to the CLI's subparsers."""
    sb = sub.add_parser("sandbox", help="the local sandbox CRM and ERP").add_subparsers(dest="action", required=True)
    sb.add_parser("up", help="start the sandbox CRM server on 127.0.0.1").set_defaults(func=cmd_sandbox_up)
    sb.add_parser("down", help="stop the sandbox CRM server").set_defaults(func=cmd_sandbox_down)
    sb.add_parser("status", help="is it running, and what does the world hold").set_defaults(func=cmd_sandbox_status)
    seed = sb.add_parser("seed", help="generate a fresh world (replaces the current one)")
    seed.add_argument("--seed", type=int, default=7, help="random seed (same seed, same world)")
    seed.add_argument("--scale", type=positive_float, default=1.0, help="size multiplier (1.0 ≈ 600 deals)")
    seed.add_argument("--start", type=iso_date, default=dt.date(2026, 9, 1), help="first day of history")
    seed.add_argument("--days", type=positive_int, default=61, help="days of history")
    seed.add_argument("--golive", type=iso_date, default=None, help="go-live date (default: mid-history)")
    seed.set_defaults(func=cmd_sandbox_seed)
    rex = sb.add_parser("reexport", help="rewrite one day's ERP export correctly from the ERP database")
    rex.add_argument("--date", type=iso_date, required=True)
    rex.set_defaults(func=cmd_sandbox_reexport)
    adv = sb.add_parser("advance", help="apply the next business day(s) to the world")
    adv.add_argument("--days", type=positive_int, default=1)
    adv.set_defaults(func=cmd_sandbox_advance)
