"""dbt's source freshness of the raw tables, as Dagster asset checks on the raw assets.

The windows and what "loaded" means are dbt's, in dbt_project/models/staging/_sources.yml
(source `raw_versions`: warn after 25 h, error after 26 h) and macros/freshness.sql (the newest
version landed, or the newest load that found its source had nothing newer). One non-blocking
multi-asset check runs `dbt source freshness` for those tables in the step's process
(dbt_runner.run_dbt) once the night's raw assets are loaded, and reports one result per raw
asset: passed, WARN past warn_after, ERROR past error_after or when dbt could not tell. The
nightly job runs it; the sync and export jobs leave it out (orchestration/jobs.without_dbt_freshness):
they would pay for dbt to say again what the night says.

Dagster's own freshness policy on the same assets (orchestration/freshness.py) says when the
asset was last materialised; this says how old the data in the table is.
"""
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    MetadataValue,
    multi_asset_check,
)

CHECK_NAME = "dbt_source_freshness"
#: the dbt source whose tables are the raw assets' (dbt_project/models/staging/_sources.yml)
DBT_SOURCE = "raw_versions"


def raw_keys() -> list[AssetKey]:
    """The raw assets whose tables the dbt source covers: one per source object."""
    from trueup.assets.ingest.objects import ALL_OBJECTS

    return [AssetKey(["raw", name]) for name in ALL_OBJECTS]


def check_keys() -> list[AssetCheckKey]:
    """The check's keys, one per raw asset (a job that leaves the check out names these)."""
    return [AssetCheckKey(key, CHECK_NAME) for key in raw_keys()]


def build_source_freshness_check():
    assets = raw_keys()
    specs = [AssetCheckSpec(CHECK_NAME, asset=key, blocking=False,
                            description="dbt source freshness of the table: WARN after 25 h without a load, "
                                        "ERROR after 26 h (dbt_project/models/staging/_sources.yml)")
             for key in assets]
    ours = [spec.key for spec in specs]

    # subsettable: a selection of some raw assets (e.g. from the UI) checks those only
    @multi_asset_check(specs=specs, name="raw_source_freshness", required_resource_keys={"settings"}, can_subset=True,
                       description="`dbt source freshness` of the raw tables, one result per raw asset.")
    def raw_source_freshness(context: AssetCheckExecutionContext):
        from .dbt_runner import run_dbt
        from .invocation import dbt_target_dir
        from .profile import dbt_vars_args

        settings = context.resources.settings.get()
        keys = [c.asset_key for c in ours if c in context.selected_asset_check_keys]
        outcome = run_dbt(settings, ["source", "freshness"], dbt_vars_args(settings),
                          ["--select", *(f"source:{DBT_SOURCE}.{k.path[-1]}" for k in keys)])
        found = {r.node.name: r for r in (outcome.result.results if outcome.result is not None else [])}
        log = dbt_target_dir(settings) / "dbt.log"
        for key in keys:
            yield _result(key, found.get(key.path[-1]), outcome.exception, log)

    return raw_source_freshness


def _result(key: AssetKey, found, exception, log) -> AssetCheckResult:
    if found is None or found.status == "runtime error":
        why = (getattr(found, "message", None) or (str(exception) if exception else None)
               or f"dbt gave no freshness for source {DBT_SOURCE}.{key.path[-1]}")
        return AssetCheckResult(asset_key=key, check_name=CHECK_NAME, passed=False,
                                severity=AssetCheckSeverity.ERROR,
                                description=f"freshness unknown: {why}",
                                metadata={"dbt_log": MetadataValue.path(str(log))})
    criteria = found.node.freshness
    meta = {"max_loaded_at": MetadataValue.text(found.max_loaded_at.isoformat()),
            "checked_at": MetadataValue.text(found.snapshotted_at.isoformat()),
            "age_hours": MetadataValue.float(round(found.age / 3600, 2)),
            "warn_after": MetadataValue.text(_window(criteria.warn_after)),
            "error_after": MetadataValue.text(_window(criteria.error_after))}
    age = f"last loaded {found.age / 3600:.1f} h ago ({found.max_loaded_at:%Y-%m-%d %H:%M} UTC)"
    if found.status == "pass":
        return AssetCheckResult(asset_key=key, check_name=CHECK_NAME, passed=True, description=age, metadata=meta)
    severity = AssetCheckSeverity.WARN if found.status == "warn" else AssetCheckSeverity.ERROR
    limit = meta["warn_after" if found.status == "warn" else "error_after"].value
    return AssetCheckResult(asset_key=key, check_name=CHECK_NAME, passed=False, severity=severity,
                            description=f"{age}: past {limit}", metadata=meta)


def _window(threshold) -> str:
    """dbt's `{count: 25, period: hour}` as "25 hours"."""
    period = getattr(threshold.period, "value", threshold.period)
    return f"{threshold.count} {period}{'' if threshold.count == 1 else 's'}"
