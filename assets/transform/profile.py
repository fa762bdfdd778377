"""Turn Trueup's warehouse setting into dbt's profile, and its settings into dbt's --vars.

dbt runs with a profile written from `settings.warehouse_url` (TRUEUP_WAREHOUSE_URL) for each
invocation (assets/transform/invocation.py), so dbt and the Python assets always point at the
same warehouse. No Dagster here: usable from a shell (`python -m trueup.orchestration.dbt_shell --
<dbt args>`) and from tests.
"""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote, urlsplit

#: the profile named in dbt_project.yml
PROFILE_NAME = "trueup"


def dbt_profile(warehouse_url: str) -> dict[str, Any]:
    """profiles.yml for `warehouse_url`: the `trueup` profile with one target holding every
    connection value (the outputs of dbt_project/profiles.yml, which `make setup` parses with)."""
    if warehouse_url.startswith("duckdb:///"):
        target, output = "duckdb", {"type": "duckdb", "path": warehouse_url.removeprefix("duckdb:///"),
                                    "schema": "main", "threads": 1}
    elif warehouse_url.startswith("postgresql"):
        u = urlsplit(warehouse_url)
        dbname = u.path.lstrip("/")
        if not (u.hostname and dbname):
            raise ValueError("TRUEUP_WAREHOUSE_URL must name a host and a database for dbt "
                             "(postgresql://user:password@host:port/dbname)")
        target, output = "postgres", {"type": "postgres", "host": u.hostname, "port": u.port or 5432,
                                      "user": unquote(u.username or ""), "password": unquote(u.password or ""),
                                      "dbname": unquote(dbname), "schema": "public", "threads": 4}
    else:
        raise ValueError("TRUEUP_WAREHOUSE_URL must start with duckdb:/// or postgresql://")
    return {PROFILE_NAME: {"target": target, "outputs": {target: output}}}


def dbt_vars_args(settings) -> list[str]:
    """`--vars` for dbt from the settings: go-live (period split of the ROI marts), reporting currency."""
    return ["--vars", json.dumps({"publish_from": settings.publish_from.isoformat(),
                                  "reporting_currency": settings.reporting_currency})]
