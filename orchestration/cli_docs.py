"""`trueup docs`: dbt's documentation site for the live warehouse — models, columns and tests from
the project, column types and row counts from the warehouse (dbt's catalog) — built into
$TRUEUP_HOME/dbt/docs and served on 127.0.0.1 (`--no-serve`: build only); beside it, under
/quality/, the gate reports and GX's Data Docs of every kept gate result (whose index it rebuilds
first: quality/data_docs.py).

dbt reaches the warehouse with the profile of a run (orchestration/dbt_shell.py), so no dbt
environment variable has to be set by hand. On DuckDB, building needs the warehouse file for a
moment: not while a run writes.
"""
from __future__ import annotations

import functools
import http.server
import subprocess
import sys
from pathlib import Path

from trueup.orchestration.commands import CliError
from trueup.orchestration.config import Settings
from trueup.quality.reports import DOCS_PORT, REPORTS_URL_PATH


def docs_dir(settings: Settings) -> Path:
    return settings.home / "dbt" / "docs"


def build_docs(settings: Settings) -> Path:
    """`dbt docs generate` against the configured warehouse; the site's folder."""
    target = docs_dir(settings)
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "trueup.orchestration.dbt_shell", "--", "docs", "generate",
                           "--target-path", str(target), "--no-use-colors"],
                          capture_output=True, text=True)
    if done.returncode != 0 or not (target / "index.html").exists():
        said = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()]
        raise CliError(f"dbt docs generate failed: {said[-1].strip() if said else 'see ' + str(target)}")
    return target


def cmd_docs(args, settings: Settings) -> None:
    from trueup.quality.data_docs import build_index
    from trueup.quality.data_docs import index_url as data_docs_url

    site = build_docs(settings)
    print(f"dbt docs built in {site}")
    data_docs = build_index(settings.reports_dir)
    if data_docs is not None:
        print(f"GX Data Docs index of the gate results built in {data_docs}")
    if args.no_serve:
        return
    server = docs_server(site, settings.reports_dir, args.port)
    print(f"serving them on http://127.0.0.1:{args.port}/, the gate reports on "
          f"http://127.0.0.1:{args.port}{REPORTS_URL_PATH}/gates/index.html"
          + (f" and GX's Data Docs on {data_docs_url(args.port)}" if data_docs is not None else "")
          + " (Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


class _DocsHandler(http.server.SimpleHTTPRequestHandler):
    """dbt's site at /, the gate reports ($TRUEUP_HOME/reports) under /quality/: nothing else of
    TRUEUP_HOME (the warehouse, the logs) is reachable. A GX Data Docs page of a kept gate result
    is rendered when it is first asked for (quality/data_docs.py: gate steps render nothing)."""

    reports: Path

    def translate_path(self, path: str) -> str:
        prefix = REPORTS_URL_PATH + "/"
        if not path.startswith(prefix):
            return super().translate_path(path)
        site, self.directory = self.directory, str(self.reports)   # the stdlib drops '..' parts
        try:
            local = super().translate_path("/" + path[len(prefix):])
        finally:
            self.directory = site
        if not Path(local).exists():
            from trueup.quality.data_docs import render_page

            render_page(self.reports, Path(local).relative_to(self.reports))
        return local

    def log_message(self, format, *args):   # noqa: A002 - the stdlib's name
        pass


def docs_server(site: Path, reports: Path, port: int) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(type("Handler", (_DocsHandler,), {"reports": reports}), directory=str(site))
    return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)


def add_docs_parser(sub) -> None:
    docs = sub.add_parser("docs", help="build the dbt docs of the live warehouse and serve them on 127.0.0.1")
    docs.add_argument("--port", type=int, default=DOCS_PORT)
    docs.add_argument("--no-serve", action="store_true", help="build the site only")
    docs.set_defaults(func=cmd_docs)
