"""Dagster definitions for the dbt project (dbt_project/): one @dbt_assets over all models.

Decisions:
- Unpartitioned. The models read the *_current views (the whole current state), so every
  run rebuilds them in full; they depend on the day-partitioned gate assets, and in the
  nightly job (one day or a backfilled range) dbt runs once, after every gate of the run.
  A blocking gate check that fails stops dbt in the same run.
- The manifest is prepared at build time (`make setup` runs `dbt parse`); it is never
  parsed at import. Without it, building the definitions fails with one line saying so.
- dbt sources name the Python assets' keys in their YAML (`validated.<obj>` is ["validated",
  obj], …); models get [<folder>, <name>] keys and their folder as group ("staging",
  "intermediate", "marts"), or the group dbt_project.yml gives them ("roi"); the nightly job
  selects them by these group names (TRANSFORM_GROUPS). dbt tests are asset checks. See
  translator.py.
- Each build gets its profile explicitly (invocation.py): nothing is put into os.environ. dbt
  runs inside the step's process through its programmatic runner (dbt_runner.py).
"""

from dagster import AssetExecutionContext, BackfillPolicy

from .invocation import PROJECT_DIR

#: the dbt models' Dagster groups: one per model folder (and warehouse schema), and `roi`, the ROI
#: marts and the facts they read (set in dbt_project.yml), apart from the golden customer in `marts`
TRANSFORM_GROUPS = ("staging", "intermediate", "marts", "roi")


class ManifestMissing(RuntimeError):
    """dbt_project/target/manifest.json was not prepared."""


def dbt_project():
    from dagster_dbt import DbtProject

    return DbtProject(project_dir=PROJECT_DIR, profiles_dir=PROJECT_DIR)


def build_transform_assets(warehouse_kind: str = "duckdb") -> list:
    """The dbt assets. Call when building Definitions (never at import). `warehouse_kind`
    ("duckdb" or "postgres") is the kind the models are shown with."""
    from dagster_dbt import dbt_assets

    from .translator import trueup_translator

    project = dbt_project()
    if not project.manifest_path.exists():
        raise ManifestMissing(f"dbt manifest not found at {project.manifest_path}: run `make setup` "
                              f"(it runs `dbt parse`) before loading the Dagster definitions")

    def make(name: str, select: str, exclude: str | None):
        @dbt_assets(manifest=project.manifest_path, project=project, dagster_dbt_translator=trueup_translator(warehouse_kind),
                    backfill_policy=BackfillPolicy.single_run(), name=name, select=select, exclude=exclude,
                    required_resource_keys={"dbt", "settings"})
        def _models(context: AssetExecutionContext):
            from .profile import dbt_vars_args

            settings = context.resources.settings.get()
            yield from context.resources.dbt.build(context, settings, dbt_vars_args(settings))

        return _models

    # two steps: staging + golden customer before publishing (which uses the crosswalk), and the
    # ROI marts (tag:roi) after publish and reconcile (which write the ledger and breaks they read)
    return [make("dbt_models", "fqn:*", "tag:roi"), make("dbt_roi_marts", "tag:roi", None)]


def build_transform_resources() -> dict:
    from .dbt_cli import DbtProjectResource

    return {"dbt": DbtProjectResource(project_dir=str(PROJECT_DIR))}
