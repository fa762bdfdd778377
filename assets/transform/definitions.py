"""Dagster definitions for the dbt project (dbt_project/): one @dbt_assets over all models.

Decisions:
- Unpartitioned. The models read the *_current views (the whole current state), so every
  run rebuilds them in full; they depend on the day-partitioned gate assets, and in the
  nightly job (one day or a backfilled range) dbt runs once, after every gate of the run.
  A blocking gate check that fails stops dbt in the same run.
- The manifest is prepared at build time (`make setup` runs `dbt parse`); it is never
  parsed at import. Without it, building the definitions fails with one line saying so.
- dbt sources `validated.<obj>` / `raw.<obj>` map to the Python assets' keys
  ["validated", obj] / ["raw", obj]; models get [<folder>, <name>] keys and their folder as
  group ("staging", "intermediate", "marts" — all selected by the "transform" group set
  in the nightly job via group names, see TRANSFORM_GROUPS). dbt tests are asset checks.
"""

import sys
from pathlib import Path
from typing import Any, Mapping, Optional

from dagster import AssetExecutionContext, AssetKey, AssetSpec, BackfillPolicy

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"
#: the model folders; each is a Dagster group (and a warehouse schema)
TRANSFORM_GROUPS = ("staging", "intermediate", "marts")


class ManifestMissing(RuntimeError):
    """dbt_project/target/manifest.json was not prepared."""


def dbt_executable() -> str:
    """The dbt installed next to this Python (the venv's), not whatever is on PATH."""
    return str(Path(sys.executable).with_name("dbt"))


def dbt_target_dir(settings) -> Path:
    """dbt's target folder for one Trueup home, kept from run to run. dbt reuses its parse of the
    project (target/partial_parse.msgpack) while the --vars and the profile stay the same, so only
    the first build of a home parses the whole project (~3 s per build otherwise). dagster-dbt's
    default, a new folder per build seeded from dbt_project/target, never helps: `make setup`
    parses with other vars and a placeholder profile, so dbt rejects that state every time."""
    return settings.home / "dbt" / "target"


def dbt_project():
    from dagster_dbt import DbtProject

    return DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)


def _operational_writers() -> dict[str, set]:
    from assets.reconcile.definitions import RECON_NAMES

    recon = {AssetKey(["recon", n]) for n in RECON_NAMES}
    return {"ops": {AssetKey(["publish", "erp_orders"])}, "recon": recon, "quality": set()}


OPERATIONAL_WRITERS = _operational_writers()


def _translator():
    from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

    class TrueupTranslator(DagsterDbtTranslator):
        """Keys and groups from the dbt node itself: no model names hard-coded."""

        def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project) -> AssetSpec:
            spec = super().get_asset_spec(manifest, unique_id, project)
            props = self.get_resource_props(manifest, unique_id)
            if props["resource_type"] == "source":
                # source table `validated.crm_companies` (identifier crm_companies_current)
                return spec.replace_attributes(key=AssetKey([props["source_name"], props["name"]]))
            folder = props["fqn"][1] if len(props["fqn"]) > 2 else "transform"
            spec = spec.replace_attributes(key=AssetKey([folder, props["name"]]), group_name=folder)
            # models reading the platform's own tables (ledger, breaks) run after the assets that
            # write them, so one nightly run ends with marts that include that night's work
            writers = set()
            for node in props.get("depends_on", {}).get("nodes", []):
                parts = node.split(".")
                if parts[0] == "source" and parts[2] in OPERATIONAL_WRITERS:
                    writers |= OPERATIONAL_WRITERS[parts[2]]
            return spec.merge_attributes(deps=sorted(writers, key=str)) if writers else spec

    return TrueupTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def build_transform_assets() -> list:
    """The dbt assets. Call when building Definitions (never at import)."""
    from dagster_dbt import dbt_assets

    project = dbt_project()
    if not project.manifest_path.exists():
        raise ManifestMissing(f"dbt manifest not found at {project.manifest_path}: run `make setup` "
                              f"(it runs `dbt parse`) before loading the Dagster definitions")

    def make(name: str, select: str, exclude: str | None):
        @dbt_assets(manifest=project.manifest_path, project=project, dagster_dbt_translator=_translator(),
                    backfill_policy=BackfillPolicy.single_run(), name=name, select=select, exclude=exclude,
                    required_resource_keys={"dbt", "settings"})
        def _models(context: AssetExecutionContext):
            from .profile import dbt_environment, dbt_vars_args

            settings = context.resources.settings.get()
            with dbt_environment(settings.warehouse_url):
                yield from context.resources.dbt.cli(["build", *dbt_vars_args(settings)], context=context,
                                                     target_path=dbt_target_dir(settings)).stream()

        return _models

    # two steps: staging + golden customer before publishing (which uses the crosswalk), and the
    # ROI marts (tag:roi) after publish and reconcile (which write the ledger and breaks they read)
    return [make("dbt_models", "fqn:*", "tag:roi"), make("dbt_roi_marts", "tag:roi", None)]


def build_transform_resources() -> dict:
    from .dbt_cli import TrueupDbtCliResource

    return {"dbt": TrueupDbtCliResource(project_dir=str(PROJECT_DIR), profiles_dir=str(PROJECT_DIR),
                                        dbt_executable=dbt_executable())}
