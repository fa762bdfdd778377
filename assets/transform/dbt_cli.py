"""The dbt resource: dagster-dbt's DbtCliResource, minus a `dbt --version` subprocess per run.

DbtCliResource learns the dbt version by running `dbt --version` once per resource instance,
and Dagster builds a new instance for every run: ~3.5 s a run on 2 cores (the subprocess
imports all of dbt). Our dbt executable is the one installed next to this Python
(definitions.dbt_executable), so its version is that of the dbt-core installed here.
Imported only when the definitions are built (dagster_dbt is slow to import).
"""
from __future__ import annotations

from functools import cached_property
from importlib.metadata import version as installed_version
from pathlib import Path

from dagster_dbt import DbtCliResource
from packaging import version


class TrueupDbtCliResource(DbtCliResource):
    @cached_property
    def _cli_version(self) -> version.Version:
        from .definitions import dbt_executable

        if Path(self.dbt_executable) == Path(dbt_executable()):
            return version.parse(installed_version("dbt-core"))
        return super()._cli_version  # another dbt: ask it, as dagster-dbt does
