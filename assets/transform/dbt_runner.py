"""One dbt build, run inside the Dagster step's process through dbt's programmatic runner.

Why not dagster-dbt's DbtCliResource (a `dbt` subprocess per build): a tiny night's two builds
spent most of their ~10 s each starting that process — Python, importing dbt and its adapter
(~3 s on 2 cores), loading the partial parse — and dagster-dbt also imported dbt in the step to
open an adapter it did not use here. In-process, dbt is imported once per run process and the
two builds of a night share it. What dagster-dbt does well is kept: the selection for the step's
subset (`get_updated_cli_invocation_params_for_context`) and the translation of dbt's result
events into Dagster outputs and asset checks (`DbtCoreCliEventMessage.to_default_asset_events`);
dbt's events reach us through the runner's callback instead of a JSON log on a pipe.

dbt keeps process-wide state (flags, the adapter registry, its event manager), so one build
runs at a time per process (a lock). Its console output is off: the step logs one line per
build, and dbt's own log (every node, every statement) is `dbt.log` in the home's dbt target
folder, where the run log line points.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Iterator

from .invocation import PROJECT_DIR, dbt_invocation, dbt_target_dir

#: dbt's events that carry a node's result (dagster-dbt translates exactly these)
RESULT_EVENTS = frozenset({"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"})

_ONE_BUILD_AT_A_TIME = threading.Lock()


class DbtBuildFailed(RuntimeError):
    """dbt could not run, or a node of the build failed."""


def dbt_build(context, settings, extra_args: list[str]) -> Iterator[Any]:
    """Run `dbt build` for the step's selection against `settings.warehouse_url`; yield the
    Dagster events of its results (outputs, asset checks); raise DbtBuildFailed after yielding
    them if any node failed."""
    from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
    from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
    from dagster_dbt.dagster_dbt_translator import DagsterDbtTranslator

    params = get_updated_cli_invocation_params_for_context(
        context=context, manifest={}, dagster_dbt_translator=DagsterDbtTranslator())
    project_dir = Path(params.dbt_project.project_dir) if params.dbt_project else PROJECT_DIR
    target = dbt_target_dir(settings)
    results: list[dict] = []

    def collect(msg) -> None:
        if msg.info.name in RESULT_EVENTS:
            from dbt_common.events.functions import msg_to_dict

            results.append(msg_to_dict(msg))

    started = time.monotonic()
    with dbt_invocation(settings) as invocation, _ONE_BUILD_AT_A_TIME:
        # dbt's global options go before the command (click ignores them after it)
        args = ["--log-path", str(target), "--log-level", "none", "--log-level-file", "debug",
                "--no-use-colors", "--no-send-anonymous-usage-stats", "--no-version-check"]
        if params.indirect_selection:
            args += ["--indirect-selection", params.indirect_selection]
        args += ["build", *extra_args, "--project-dir", str(project_dir), "--profiles-dir",
                 str(invocation.profiles_dir), "--target-path", str(target), *params.selection_args]
        outcome = _invoke(args, collect)
    seconds = time.monotonic() - started

    for raw in results:
        yield from DbtCoreCliEventMessage(raw_event=raw, event_history_metadata={}).to_default_asset_events(
            manifest=params.manifest, dagster_dbt_translator=params.dagster_dbt_translator,
            context=context, target_path=target, project=params.dbt_project)

    statuses = [r["data"]["node_info"].get("node_status", "") for r in results]
    counts = ", ".join(f"{s} {statuses.count(s)}" for s in sorted(set(statuses)))
    context.log.info(f"dbt build: {len(results)} nodes ({counts or 'none'}) in {seconds:.1f} s; "
                     f"dbt's own log: {target / 'dbt.log'}")
    failed = [f"{r['data']['node_info'].get('unique_id')}: {r['info'].get('msg', '').strip()}"
              for r in results if r["data"]["node_info"].get("node_status") in ("error", "fail", "runtime error")]
    if outcome.exception is not None:
        raise DbtBuildFailed(f"dbt could not run the build: {outcome.exception}")
    if not outcome.success:
        first = failed[0] if failed else "see dbt's log"
        raise DbtBuildFailed(f"dbt build failed ({len(failed)} node(s)): {first}; log: {target / 'dbt.log'}")


def _invoke(args: list[str], callback):
    from dbt.cli.main import dbtRunner

    try:
        return dbtRunner(callbacks=[callback]).invoke(args)
    finally:
        _release_duckdb()


def _release_duckdb() -> None:
    """dbt-duckdb keeps its DuckDB database open in the process after a build, with its own
    configuration; the next step's connection to the same file would then be refused ("a
    different configuration than existing connections"), and other processes could not open the
    file at all. Close it, as dbt-duckdb itself does at interpreter exit."""
    try:
        from dbt.adapters.duckdb.connections import DuckDBConnectionManager
    except ImportError:   # no dbt-duckdb: nothing held
        return
    DuckDBConnectionManager.close_all_connections()
