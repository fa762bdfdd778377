# PYTHON_ARGCOMPLETE_OK  (argcomplete's marker: shells with global completion complete `trueup` too)
"""The `trueup` command: nightly runs, backfills and syncs, reconciliation breaks, a publish dry
run, quarantine, held writes, the UI — and the command groups other installed packages register
(the sandbox's `trueup sandbox …` and `trueup demo`; see orchestration/commands.py).

Commands print what they did in human terms. Expected failures end with one line on
stderr and a non-zero exit; set TRUEUP_DEBUG=1 to see tracebacks.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable

from trueup.orchestration.commands import CliError, add_registered_commands, iso_date
from trueup.orchestration.config import ConfigError, Settings, load_settings


# nightly, backfill and sync: orchestration/cli_runs.py; breaks: cli_breaks.py; publish --dry-run: cli_publish.py

# -- upkeep, quarantine, held writes ------------------------------------------------------
def cmd_migrate(args, settings: Settings) -> None:
    """Bring the warehouse's layout up to date (re-runnable; see assets/migrations.py)."""
    from trueup.assets.migrations import migrate
    from trueup.orchestration.warehouse_session import warehouse_session

    with warehouse_session(settings.warehouse_url) as wh:
        for line in migrate(wh):
            print(f"migration {line}")


def cmd_replay(args, settings: Settings) -> None:
    """Through the Dagster instance, like the nightly runs: the replay shows in the UI."""
    from trueup.orchestration.runner import run_unpartitioned_job

    outcome = run_unpartitioned_job(settings, "replay_quarantine",
                                    run_config={"ops": {"replay_quarantine_op": {"config": {"actor": _actor(args)}}}})
    if not outcome.success:
        raise CliError(outcome.error or "replay failed")
    print(f"replay run {outcome.run_id}: {outcome.summary}")


def cmd_approve(args, settings: Settings) -> None:
    from trueup.orchestration.runner import run_unpartitioned_job

    outcome = run_unpartitioned_job(settings, "approve_write", run_config={"ops": {"approve_write_op": {"config": {
        "idempotency_key": args.key, "actor": _actor(args)}}}})
    if not outcome.success:
        raise CliError(outcome.error or "approval failed")
    print(outcome.summary)


def cmd_quarantine_list(args, settings: Settings) -> None:
    from trueup.orchestration.warehouse_session import warehouse_session
    from trueup.quality.store import open_quarantine

    if args.contract is not None:
        from trueup.quality.contracts import CONTRACTS

        if args.contract not in CONTRACTS:
            import difflib

            near = difflib.get_close_matches(args.contract, list(CONTRACTS), n=1, cutoff=0.6)
            raise CliError(f"unknown contract {args.contract!r}" + (f" (did you mean {near[0]}?)" if near else "")
                           + f"; valid: {', '.join(sorted(CONTRACTS))}")
    with warehouse_session(settings.warehouse_url) as wh:
        df = open_quarantine(wh, args.contract)
    if df.empty:
        print("no open quarantine entries")
        return
    for r in df.itertuples():
        print(f"{r.quarantine_id}  {r.contract:<26} {r.business_key:<16} attempts {r.attempts}  "
              f"{r.failed_expectations}")
    print(f"{len(df)} open")


def cmd_quarantine_discard(args, settings: Settings) -> None:
    from trueup.orchestration.warehouse_session import warehouse_session
    from trueup.quality.store import resolve

    with warehouse_session(settings.warehouse_url) as wh:
        n = resolve(wh, [args.id], "discarded", _actor(args), args.reason)
    if not n:
        raise CliError(f"no open quarantine entry {args.id}")
    print(f"discarded {args.id} (by {_actor(args)}: {args.reason})")


def cmd_writes_list(args, settings: Settings) -> None:
    from trueup.assets.publish.ledger import waiting
    from trueup.orchestration.warehouse_session import warehouse_session

    with warehouse_session(settings.warehouse_url) as wh:
        df = waiting(wh)
    if df.empty:
        print("no writes waiting for a person")
        return
    for r in df.itertuples():
        amount = f"{r.amount} {r.currency}" if r.amount else "-"
        print(f"{r.idempotency_key:<34} {r.state:<17} {amount:>18}  {r.age_days:5.1f} days  {r.hold_reason or ''}")
    print(f"{len(df)} waiting; `trueup approve KEY` (awaiting approval), `trueup writes release KEY` or "
          f"`trueup writes link KEY --order SO-…` (held)")


def _writes_decision(args, settings: Settings, fn) -> None:
    from trueup.orchestration.warehouse_session import warehouse_session

    with warehouse_session(settings.warehouse_url) as wh:
        try:
            print(fn(wh))
        except LookupError as exc:
            raise CliError(str(exc)) from None


def cmd_writes_release(args, settings: Settings) -> None:
    from trueup.assets.publish.ledger import decide

    _writes_decision(args, settings, lambda wh: decide(wh, args.key, _actor(args), "release")
                     + "; the next publish run sends it")


def cmd_writes_link(args, settings: Settings) -> None:
    import re

    from trueup.assets.publish.ledger import decide

    if not re.fullmatch(r"SO-\d+", args.order):
        raise CliError(f"--order {args.order!r} is not an ERP order number (SO-<digits>)")
    _writes_decision(args, settings, lambda wh: decide(wh, args.key, _actor(args), "link", args.order)
                     + "; nothing will be sent for it")


def cmd_writes_undo(args, settings: Settings) -> None:
    from trueup.assets.publish.ledger import undo

    _writes_decision(args, settings, lambda wh: undo(wh, args.key, _actor(args)))


def _actor(args) -> str:
    import getpass

    return getattr(args, "actor", None) or os.environ.get("TRUEUP_ACTOR") or getpass.getuser()


def cmd_ui(args, settings: Settings) -> None:
    import subprocess

    from trueup.orchestration.runner import ensure_dagster_home

    ensure_dagster_home(settings)
    print(f"Dagster UI on http://127.0.0.1:{args.port} (DAGSTER_HOME={settings.dagster_home}); Ctrl-C stops it")
    subprocess.run([sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml", "-h", "127.0.0.1",
                    "-p", str(args.port)], check=False)


# -- wiring ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from trueup.orchestration import cli_analyst, cli_breaks, cli_docs, cli_publish, cli_runs
    from trueup.quality.reports import UI_PORT

    p = argparse.ArgumentParser(prog="trueup", description="Trueup: CRM/ERP sync, quality gates and reconciliation")
    p.add_argument("--version", action="version", version=f"trueup {_version()}")
    sub = p.add_subparsers(dest="command", required=True)

    nightly = sub.add_parser("nightly", help="run the nightly job for one business day")
    nightly.add_argument("--date", type=iso_date, default=None, help="business day (default: yesterday)")
    cli_runs.add_output_flags(nightly)
    nightly.set_defaults(func=cli_runs.cmd_nightly)
    backfill = sub.add_parser("backfill", help="run the nightly job for a range of days, in one run")
    backfill.add_argument("--start", type=iso_date, default=None,
                          help="first day (default: TRUEUP_START_DATE, a seeded sandbox's first day)")
    backfill.add_argument("--end", type=iso_date, default=None,
                          help="last day (default: TRUEUP_BACKFILL_END, a seeded sandbox's last day lived)")
    cli_runs.add_output_flags(backfill)
    backfill.set_defaults(func=cli_runs.cmd_backfill)
    sync = sub.add_parser("sync", help="ingest and gates only (no publishing, no dbt) for a day or a range")
    cli_runs.add_sync_arguments(sync)
    cli_runs.add_output_flags(sync)
    sync.set_defaults(func=cli_runs.cmd_sync)
    pub = sub.add_parser("publish", help="--dry-run: list the ERP writes publishing would make, make none")
    cli_publish.add_publish_arguments(pub)
    pub.set_defaults(func=cli_publish.cmd_publish)
    br = sub.add_parser("breaks", help="open reconciliation breaks: list, show").add_subparsers(
        dest="action", required=True)
    bl = br.add_parser("list", help="open breaks with amount, age and owner")
    bs = br.add_parser("show", help="one break, every field")
    cli_breaks.add_breaks_arguments(bl, bs)
    bl.set_defaults(func=cli_breaks.cmd_breaks_list)
    bs.set_defaults(func=cli_breaks.cmd_breaks_show)
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
    ql.add_argument("--contract", default=None).completer = _contract_names
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
    cli_docs.add_docs_parser(sub)
    cli_analyst.add_analyst_parser(sub)
    ui = sub.add_parser("ui", help="start the Dagster UI on 127.0.0.1")
    ui.add_argument("--port", type=int, default=UI_PORT)   # the port the run summaries link to
    ui.set_defaults(func=cmd_ui)

    comp = sub.add_parser("completion", help="print the shell code that completes trueup's commands and options")
    comp.add_argument("shell", nargs="?", default="bash", choices=("bash", "zsh", "fish", "tcsh", "powershell"))
    comp.set_defaults(func=cmd_completion, needs_settings=False)

    add_registered_commands(sub)   # e.g. `trueup sandbox …`, `trueup demo` (sandbox/commands.py, sandbox/demo.py)
    return p


def _contract_names(**_kwargs) -> list[str]:
    from trueup.quality.contracts import CONTRACTS

    return sorted(CONTRACTS)


def cmd_completion(args: argparse.Namespace, _settings) -> None:
    """e.g. `eval "$(trueup completion bash)"` in ~/.bashrc (argcomplete's own shell code)."""
    import argcomplete

    sys.stdout.write(argcomplete.shellcode(["trueup"], shell=args.shell))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("trueup")
    except PackageNotFoundError:   # run from a source tree that was never installed
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if not os.environ.get("TRUEUP_DEBUG"):
        import warnings

        # Dagster flags beta/superseded APIs on every definitions load; users cannot act on it
        warnings.filterwarnings("ignore", message=".*(beta|superseded|deprecated).*")
    parser = build_parser()
    if argv is None:
        import argcomplete

        # completing a command line (the shell set _ARGCOMPLETE): answers and exits; else nothing
        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    func: Callable = args.func
    # TRUEUP_HOME holds the warehouse (contact PII), the ERP copy, logs and the sandbox token:
    # everything this process creates is private to its user (folders 0700, files 0600)
    os.umask(0o077)
    try:
        if not getattr(args, "needs_settings", True):   # e.g. `trueup completion`: no home needed
            func(args, None)
            return 0
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
    from trueup.orchestration.crm_check import CrmCheckFailed
    from trueup.orchestration.runner import RunRefused

    expected = (CliError, ConfigError, CrmCheckFailed, RunRefused)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, expected):
        return text
    return f"{type(exc).__name__}: {text} (set TRUEUP_DEBUG=1 for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
