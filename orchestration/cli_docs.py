"""`trueup docs`: dbt's documentation site for the live warehouse — models, columns and tests from
the project, column types and row counts from the warehouse (dbt's catalog) — built into
$TRUEUP_HOME/dbt/docs and served on 127.0.0.1 (`--no-serve`: build only).

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
    site = build_docs(settings)
    print(f"dbt docs built in {site}")
    if args.no_serve:
        return
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    print(f"serving them on http://127.0.0.1:{args.port}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()


def add_docs_parser(sub) -> None:
    docs = sub.add_parser("docs", help="build the dbt docs of the live warehouse and serve them on 127.0.0.1")
    docs.add_argument("--port", type=int, default=8080)
    docs.add_argument("--no-serve", action="store_true", help="build the site only")
    docs.set_defaults(func=cmd_docs)
