"""The dbt resource: the dbt project, run by dagster-dbt's stock DbtCliResource against the run's
warehouse, with the profile and the dbt command of one invocation (invocation.py) passed to it
explicitly. Imported only when the definitions are built (dagster_dbt is slow to import).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from dagster import ConfigurableResource
from dagster_dbt import DbtCliResource

from .invocation import dbt_invocation


class DbtProjectResource(ConfigurableResource):
    """The dbt project (dbt_project/); `for_settings` gives the DbtCliResource of one invocation."""

    project_dir: str

    @contextlib.contextmanager
    def for_settings(self, settings) -> Iterator[DbtCliResource]:
        """A DbtCliResource for `settings.warehouse_url`, valid until the block ends."""
        with dbt_invocation(settings) as invocation:
            yield DbtCliResource(project_dir=self.project_dir, profiles_dir=str(invocation.profiles_dir),
                                 dbt_executable=str(invocation.executable))
