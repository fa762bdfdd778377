"""The dbt resource: the dbt project (dbt_project/), built against the run's warehouse inside the
step's process (dbt_runner.py). Imported only when the definitions are built.
"""
from __future__ import annotations

from typing import Any, Iterator

from dagster import ConfigurableResource

from .dbt_runner import dbt_build


class DbtProjectResource(ConfigurableResource):
    """The dbt project; `build` runs `dbt build` for a step's selection."""

    project_dir: str

    def build(self, context, settings, extra_args: list[str]) -> Iterator[Any]:
        """The Dagster events of `dbt build <extra_args>` for the step's selection, against
        `settings.warehouse_url`; raises DbtBuildFailed if a node fails."""
        yield from dbt_build(context, settings, extra_args)
