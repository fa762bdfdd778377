"""One dbt build, run inside the Dagster step's process through dbt's programmatic runner.

Why not dagster-dbt's DbtCliResource (a `dbt` subprocess per build): a tiny night's two builds
spent most of their ~10 s each starting that process — Python, importing dbt and its adapter
(~3 s on 2 cores), loading the partial parse — and dagster-dbt also imported dbt in the step to
open an adapter it did not use here. In-process, dbt is imported once per run process and the
two builds of a night share it, and so does dbt's parse of the project (`ParsedProjects`: a
build hands dbt the Manifest parsed by the process's first build for the same project files,
profile and vars, which skips loading the partial parse, ~0.5 s per build; and a process's first
build reads the parse another process stored for the same key, parse_store.py, instead of
parsing, ~3 s). What dagster-dbt does well is kept: the selection for the step's
subset (`get_updated_cli_invocation_params_for_context`) and the translation of dbt's result
events into Dagster outputs and asset checks (`DbtCoreCliEventMessage.to_default_asset_events`);
dbt's events reach us through the runner's callback instead of a JSON log on a pipe.

dbt keeps process-wide state (flags, the adapter registry, its event manager), so one build
runs at a time per process (a lock). Its console output is off: the step logs one line per
build, and dbt's own log (every node, every statement) is `dbt.log` in the home's dbt target
folder, where the run log line points.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator

from . import parse_store
from .invocation import PROJECT_DIR, dbt_invocation, dbt_target_dir
from .profile import dbt_profile

#: dbt's events that carry a node's result (dagster-dbt translates exactly these)
RESULT_EVENTS = frozenset({"LogModelResult", "LogTestResult", "LogSeedResult", "LogSnapshotResult"})

_ONE_BUILD_AT_A_TIME = threading.Lock()
#: folders of a dbt project that are dbt's output, not its source
_NOT_SOURCE = frozenset({"target", "logs", "dbt_packages"})
_ENV_VAR = re.compile(r"""env_var\(\s*['"]([^'"]+)['"]""")


class ParsedProjects:
    """dbt's parsed Manifest, kept for the life of the process and keyed by what a parse depends
    on: every source file of the project (path, size, mtime), the profile, and the values of the
    --vars and environment variables it reads where the parse uses them (`_read_at_parse`). Any change to one
    of them is a new key, so an edited model is parsed again (dbt's own partial parse then does
    the work). A few entries: a process (a test worker) may build several homes."""

    def __init__(self, size: int = 3):
        self._size = size
        self._entries: OrderedDict[str, Any] = OrderedDict()

    @staticmethod
    def key(project_dir: Path, warehouse_url: str, extra_args: list[str]) -> str:
        sources = [p for p in project_dir.rglob("*")
                   if p.is_file() and p.relative_to(project_dir).parts[0] not in _NOT_SOURCE]
        files = sorted((str(p.relative_to(project_dir)), p.stat().st_size, p.stat().st_mtime_ns) for p in sources)
        # what of the project a parse renders with the values of vars and environment variables
        at_parse = [_read_at_parse(p, p.read_text(encoding="utf-8", errors="replace")) for p in sources
                    if p.suffix in (".sql", ".yml", ".yaml")]
        env = sorted((k, os.environ.get(k)) for k in {m for t in at_parse for m in _ENV_VAR.findall(t)})
        args = extra_args if any(_VAR.search(t) for t in at_parse) else _without_vars(extra_args)
        from dbt.version import __version__ as dbt_version   # a parse is dbt's (the key names stored parses too)

        blob = json.dumps([str(project_dir), files, _parse_relevant(dbt_profile(warehouse_url)), args, env,
                           dbt_version], default=str)
        return hashlib.sha256(blob.encode()).hexdigest()   # a digest: the profile's password is not kept

    def get(self, key: str):
        if key in self._entries:
            self._entries.move_to_end(key)
        return self._entries.get(key)

    def put(self, key: str, manifest) -> None:
        self._entries[key] = manifest
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)


_PARSED = ParsedProjects()

_VAR = re.compile(r"\bvar\(")   # not env_var(
_PARSE_TIME_CALL = re.compile(r"\b(?:config|ref|source)\(")


def _read_at_parse(path: Path, text: str) -> str:
    """The part of a project file whose var() and env_var() values a parse keeps: all of a YAML
    file (properties, configurations, the project and profile files); of SQL only the config(),
    ref() and source() calls. dbt's parse keeps each model's and macro's SQL unrendered and
    renders it at run time with the invocation's vars and environment, so a value read in a SQL
    body (this project's go-live and reporting currency) does not change the Manifest: the worlds
    of one test session, each with its own go-live, then share one parse (~3.5 s each saved).
    tests/unit/test_dbt_parse_reuse.py compares a parse made with other values with one made with
    the defaults, field by field."""
    if path.suffix in (".yml", ".yaml"):
        return text
    calls = []
    for m in _PARSE_TIME_CALL.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        calls.append(text[m.start():i])
    return "\n".join(calls)


def _without_vars(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
        elif a == "--vars":
            skip = True
        elif not a.startswith("--vars="):
            out.append(a)
    return out

#: the attributes of `target` the project's Jinja may read: a parse depends on these only
#: (tests/unit/test_dbt_parse_reuse.py holds the project to it)
TARGET_ATTRIBUTES_READ = frozenset({"schema", "type"})


def _parse_relevant(profile: dict) -> dict:
    """The profile as far as a parse depends on it. A DuckDB file's folder is not: dbt names its
    relations by the database, the file's stem, and the project reads no other target attribute
    than TARGET_ATTRIBUTES_READ; so the worlds of one process (a test worker: a warehouse.duckdb
    per world) share one parse. Everything else of the profile stays in the key."""
    out = json.loads(json.dumps(profile))
    for target in out.values():
        for output in target["outputs"].values():
            if output.get("type") == "duckdb":
                output["path"] = Path(output["path"]).name
    return out


class DbtBuildFailed(RuntimeError):
    """dbt could not run, or a node of the build failed."""


def run_dbt(settings, command: list[str], extra_args: list[str], selection: list[str], callback=None, *,
            global_args: list[str] = (), project_dir: Path = PROJECT_DIR):
    """dbt's result of `command` (e.g. ["build"], ["source", "freshness"]) with `extra_args` (the
    --vars, which the parse depends on too) for `selection`, against `settings.warehouse_url`, in
    this process: the profile written for the invocation, dbt's log in the home's target folder
    and nothing on the console, the project parsed once per ParsedProjects key."""
    target = dbt_target_dir(settings)
    with dbt_invocation(settings) as invocation, _ONE_BUILD_AT_A_TIME:
        # dbt's global options go before the command (click ignores them after it)
        args = ["--log-path", str(target), "--log-level", "none", "--log-level-file", "debug",
                "--no-use-colors", "--no-send-anonymous-usage-stats", "--no-version-check",
                # no manifest.json / run_results.json in the target: nothing reads them (the step
                # translates dbt's events as they come), and writing the 1 MB manifest twice per
                # build was ~0.3 s of each build; partial_parse.msgpack is still kept
                "--no-write-json", *global_args]
        where = ["--project-dir", str(project_dir), "--profiles-dir", str(invocation.profiles_dir),
                 "--target-path", str(target)]
        key = ParsedProjects.key(project_dir, settings.warehouse_url, extra_args)
        manifest = _PARSED.get(key)
        if manifest is None:
            manifest = parse_store.load(project_dir, key)   # another process's parse of the same key
            if manifest is None:
                parsed = _invoke([*args, "parse", *extra_args, *where], None)
                if parsed.success and parsed.result is not None:
                    manifest = parsed.result
                    parse_store.save(project_dir, key, manifest)
            if manifest is not None:
                _PARSED.put(key, manifest)
        return _invoke([*args, *command, *extra_args, *where, *selection], callback, manifest)


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
    global_args = ["--indirect-selection", params.indirect_selection] if params.indirect_selection else []
    outcome = run_dbt(settings, ["build"], extra_args, [*params.selection_args], collect,
                      global_args=global_args, project_dir=project_dir)
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


def _invoke(args: list[str], callback, manifest=None):
    from dbt.cli.main import dbtRunner

    from .dbt_adapter import adjust

    adjust()   # the behaviour flags' source found without reading every frame's file (dbt_adapter.py)
    from trueup.connectors.warehouse import release_held

    release_held()   # dbt-duckdb opens the file with a configuration of its own
    try:
        return dbtRunner(manifest=manifest, callbacks=[callback] if callback else []).invoke(args)
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
