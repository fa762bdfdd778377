"""Turn Trueup's warehouse setting into the environment dbt's profile reads.

dbt_project/profiles.yml takes every connection value from TRUEUP_DBT_* variables; this
module derives them from `settings.warehouse_url` (TRUEUP_WAREHOUSE_URL), so dbt and the
Python assets always point at the same warehouse. No Dagster here: usable from a shell
(`python -m assets.transform.profile -- <dbt args>`) and from tests.
"""
from __future__ import annotations

import contextlib
import json
import os
from typing import Iterator, Mapping
from urllib.parse import unquote, urlsplit

DBT_ENV_KEYS = ("TRUEUP_DBT_TARGET", "TRUEUP_DBT_DUCKDB_PATH", "TRUEUP_DBT_PG_HOST", "TRUEUP_DBT_PG_PORT",
                "TRUEUP_DBT_PG_USER", "TRUEUP_DBT_PG_PASSWORD", "TRUEUP_DBT_PG_DBNAME")


def dbt_env(warehouse_url: str) -> dict[str, str]:
    """The TRUEUP_DBT_* variables (plus telemetry off) for `warehouse_url`."""
    env = {"DO_NOT_TRACK": "1", "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    if warehouse_url.startswith("duckdb:///"):
        return {**env, "TRUEUP_DBT_TARGET": "duckdb",
                "TRUEUP_DBT_DUCKDB_PATH": warehouse_url.removeprefix("duckdb:///")}
    if warehouse_url.startswith("postgresql"):
        u = urlsplit(warehouse_url)
        dbname = u.path.lstrip("/")
        if not (u.hostname and dbname):
            raise ValueError("TRUEUP_WAREHOUSE_URL must name a host and a database for dbt "
                             "(postgresql://user:password@host:port/dbname)")
        return {**env, "TRUEUP_DBT_TARGET": "postgres", "TRUEUP_DBT_PG_HOST": u.hostname,
                "TRUEUP_DBT_PG_PORT": str(u.port or 5432), "TRUEUP_DBT_PG_USER": unquote(u.username or ""),
                "TRUEUP_DBT_PG_PASSWORD": unquote(u.password or ""), "TRUEUP_DBT_PG_DBNAME": unquote(dbname)}
    raise ValueError("TRUEUP_WAREHOUSE_URL must start with duckdb:/// or postgresql://")


def dbt_vars_args(settings) -> list[str]:
    """`--vars` for dbt from the settings: go-live (period split of the ROI marts), reporting currency."""
    return ["--vars", json.dumps({"publish_from": settings.publish_from.isoformat(),
                                  "reporting_currency": settings.reporting_currency})]


# dbt looks up its latest version on PyPI whenever `dbt --version` runs (stock dagster-dbt runs it
# once per run; ours does not, see dbt_cli.py); a slow DNS answer can stall a run for minutes. A
# dead local proxy makes that lookup fail at once; dbt needs no network otherwise (no packages),
# databases are not HTTP.
OFFLINE = {"HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9", "NO_PROXY": "",
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"}


@contextlib.contextmanager
def dbt_environment(warehouse_url: str, environ: Mapping[str, str] | None = None) -> Iterator[dict[str, str]]:
    """Set the dbt variables in os.environ for the duration of one dbt invocation.

    DbtCliResource passes os.environ to the dbt subprocess (and reads the profile in-process
    for its adapter handle), so this is where the variables must be. Runs are in-process and
    single-threaded (orchestration/jobs.py); the previous values are restored afterwards."""
    target = os.environ if environ is None else environ
    values = {**dbt_env(warehouse_url), **OFFLINE}
    saved = {k: target.get(k) for k in (*DBT_ENV_KEYS, *values)}
    for k in DBT_ENV_KEYS:
        target.pop(k, None)  # no stale PostgreSQL values next to a DuckDB target
    target.update(values)
    try:
        yield values
    finally:
        for k, v in saved.items():
            if v is None:
                target.pop(k, None)
            else:
                target[k] = v


if __name__ == "__main__":  # run dbt by hand against the configured warehouse
    import subprocess
    import sys
    from pathlib import Path

    from orchestration.config import load_settings

    project = Path(__file__).resolve().parents[2] / "dbt_project"
    args = [a for a in sys.argv[1:] if a != "--"] or ["build"]
    env = {**os.environ, **dbt_env(load_settings().warehouse_url),
           "TRUEUP_PUBLISH_FROM": load_settings().publish_from.isoformat()}
    dbt = Path(sys.executable).with_name("dbt")
    sys.exit(subprocess.call([str(dbt), *args, "--project-dir", str(project), "--profiles-dir", str(project)],
                             env=env))
