"""Dagster assets for ingestion: one per source object, partitioned by business day.

A single-run backfill policy lets a range of days run in one run (each day is still
replaced on its own); transient failures are retried by the retry policy, permanent ones
fail at once with a one-line reason.
"""

import datetime as dt

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    AssetSpec,
    Backoff,
    BackfillPolicy,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
    multi_asset,
)

from assets.run_facts import RunFacts, record_sync_run
from connectors.errors import classify

from .objects import CRM_OBJECTS, ERP_DB_OBJECTS, ERP_EXPORT_OBJECTS, SourceObject

RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)


def raw_key(obj: SourceObject) -> AssetKey:
    return AssetKey(["raw", obj.name])


def source_spec(obj: SourceObject) -> AssetSpec:
    """The record set in the source system, shown upstream of its raw copy in the lineage."""
    system = {"crm": "CRM (HubSpot API)", "erp_db": "ERP database", "erp_export": "ERP nightly export"}[obj.system]
    return AssetSpec(key=AssetKey(["source", obj.name]), group_name="sources",
                     description=f"{obj.source_name} in the {system} — external, read by raw/{obj.name}")


def _facts(context: AssetExecutionContext, asset_name: str, partition: str) -> RunFacts:
    tags = context.run.tags
    return RunFacts(run_id=context.run.run_id, asset=asset_name, partition=partition,
                    attempt=context.retry_number + 1, correlation_id=tags.get("trueup/correlation_id"))


def _fail_fast(exc: Exception) -> None:
    """Permanent errors must not be retried: turn them into a Failure that says why."""
    if classify(exc) != "transient":
        raise Failure(description=str(exc), allow_retries=False) from exc


def _windows(context: AssetExecutionContext):
    pdef = context.assets_def.partitions_def
    for key in context.partition_keys:
        w = pdef.time_window_for_partition_key(key)
        yield key, w.start, w.end


def build_crm_asset(obj: SourceObject, partitions_def):
    @asset(
        key=raw_key(obj), deps=[source_spec(obj).key], partitions_def=partitions_def, group_name="ingest_crm",
        backfill_policy=BackfillPolicy.single_run(), retry_policy=RETRY, kinds={"python", "hubspot"},
        description=f"CRM {obj.source_name} modified each day (incremental search + archived tombstones), "
                    f"landed in raw.{obj.name}; raw.{obj.current_view} holds the current state.",
        required_resource_keys={"warehouse", "crm", "settings"},
    )
    def _crm_asset(context: AssetExecutionContext) -> MaterializeResult:
        from .crm_extract import extract_crm_day
        from .raw_store import land_partition

        wh, client = context.resources.warehouse.get(), context.resources.crm.client()
        tz = context.resources.settings.get().timezone
        totals, per_day = {"rows_read": 0, "rows_written": 0, "requests": 0, "retries": 0, "pages": 0}, []
        for key, start, end in _windows(context):
            try:
                with record_sync_run(wh, _facts(context, f"raw/{obj.name}", key)) as facts:
                    facts.window_start, facts.window_end = start.replace(tzinfo=None), end.replace(tzinfo=None)
                    ex = extract_crm_day(client, obj, start, end, tz)
                    landed = land_partition(wh, obj, key, ex.rows, context.run.run_id, f"crm:{obj.source_name}",
                                            earlier=ex.earlier)
                    facts.rows_read = len(ex.rows) + len(ex.earlier)
                    facts.rows_written = landed.rows_written + landed.rows_merged_earlier
                    facts.pages, facts.retries = ex.stats.get("pages", 0), ex.stats.get("retries", 0)
            except Exception as exc:
                _fail_fast(exc)
                raise
            for k in ("rows_read", "rows_written", "pages", "retries"):
                totals[k] += getattr(facts, k)
            totals["requests"] += ex.stats.get("requests", 0)
            per_day.append((key, len(ex.rows), len(ex.earlier)))
        return MaterializeResult(metadata=_metadata(context, totals, per_day))

    return _crm_asset


def build_erp_table_asset(obj: SourceObject, partitions_def):
    @asset(
        key=raw_key(obj), deps=[source_spec(obj).key], partitions_def=partitions_def, group_name="ingest_erp",
        backfill_policy=BackfillPolicy.single_run(), retry_policy=RETRY, kinds={"python", "sql"},
        description=f"ERP table {obj.source_name}: rows changed each day (updated_at window with look-back), "
                    f"landed in raw.{obj.name}; raw.{obj.current_view} holds the current state.",
        required_resource_keys={"warehouse", "erp", "settings"},
    )
    def _erp_asset(context: AssetExecutionContext) -> MaterializeResult:
        from .erp_extract import extract_erp_table_day
        from .raw_store import land_partition

        wh, engine = context.resources.warehouse.get(), context.resources.erp.engine()
        tz = context.resources.settings.get().timezone
        totals, per_day, drift = {"rows_read": 0, "rows_written": 0}, [], set()
        for key, start, end in _windows(context):
            try:
                with record_sync_run(wh, _facts(context, f"raw/{obj.name}", key)) as facts:
                    facts.window_start, facts.window_end = start.replace(tzinfo=None), end.replace(tzinfo=None)
                    rows, earlier, new_cols = extract_erp_table_day(engine, obj, start, end, tz)
                    landed = land_partition(wh, obj, key, rows, context.run.run_id, f"erp_db:{obj.source_name}",
                                            earlier=earlier)
                    facts.rows_read = len(rows) + len(earlier)
                    facts.rows_written = landed.rows_written + landed.rows_merged_earlier
            except Exception as exc:
                _fail_fast(exc)
                raise
            drift.update(new_cols)
            totals["rows_read"] += facts.rows_read
            totals["rows_written"] += facts.rows_written
            per_day.append((key, len(rows), len(earlier)))
        if drift:
            context.log.warning(f"ERP table {obj.source_name} has new column(s) carried along: {sorted(drift)}")
        return MaterializeResult(metadata={**_metadata(context, totals, per_day),
                                           "new_source_columns": MetadataValue.json(sorted(drift))})

    return _erp_asset


def build_erp_export_assets(partitions_def):
    objs = ERP_EXPORT_OBJECTS

    @multi_asset(
        name="erp_exports", outs={o.name: AssetOut(key=raw_key(o), group_name="ingest_erp",
                                                   description=f"ERP export {o.source_name}.csv of each day, "
                                                   f"landed in raw.{o.name} once the export verifies")
                                  for o in objs.values()},
        deps=[source_spec(o).key for o in objs.values()], partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(), retry_policy=RETRY, can_subset=False,
        required_resource_keys={"warehouse", "landing"},
    )
    def _exports(context: AssetExecutionContext):
        from .erp_extract import manifest_digest, read_verified_export
        from .export_log import record_export_load
        from .raw_store import land_partition

        wh, landing = context.resources.warehouse.get(), context.resources.landing.dir()
        totals = {o.name: {"rows_read": 0, "rows_written": 0} for o in objs.values()}
        drift: dict[str, set] = {o.name: set() for o in objs.values()}
        rejected: list[str] = []
        for key in context.partition_keys:
            check = None
            try:
                with record_sync_run(wh, _facts(context, "raw/erp_exports", key)) as facts:
                    check, frames, new_cols = read_verified_export(landing, key, {o.name: o for o in objs.values()})
                    for name, df in frames.items():
                        landed = land_partition(wh, next(o for o in objs.values() if o.name == name), key, df,
                                                context.run.run_id, f"erp_export:{key}/{name.removeprefix('erp_')}.csv")
                        totals[name]["rows_read"] += len(df)
                        totals[name]["rows_written"] += landed.rows_written
                        facts.rows_read += len(df)
                        facts.rows_written += landed.rows_written
                        drift[name].update(new_cols[name])
                record_export_load(wh, key, manifest_digest(check), "loaded", None, check.rows, context.run.run_id)
            except Exception as exc:
                if classify(exc) == "transient":
                    raise  # the retry policy re-runs the step
                # a bad export is rejected whole; the other days of the range still load
                record_export_load(wh, key, manifest_digest(check) if check else None, "rejected", str(exc),
                                   {}, context.run.run_id)
                context.log.error(str(exc))
                rejected.append(str(exc))
        if rejected:
            raise Failure(description=rejected[0] if len(rejected) == 1 else
                          f"{len(rejected)} ERP exports rejected: " + " | ".join(rejected), allow_retries=False,
                          metadata={"rejected": MetadataValue.json(rejected)})
        for o in objs.values():
            if drift[o.name]:
                context.log.warning(f"{o.source_name}.csv has new column(s) carried along: {sorted(drift[o.name])}")
            yield MaterializeResult(asset_key=raw_key(o), metadata={
                "rows_read": totals[o.name]["rows_read"], "rows_written": totals[o.name]["rows_written"],
                "partitions": MetadataValue.json(list(context.partition_keys)),
                "new_source_columns": MetadataValue.json(sorted(drift[o.name])),
            })

    return _exports


def _metadata(context, totals: dict, per_day: list) -> dict:
    meta = {k: MetadataValue.int(int(v)) for k, v in totals.items()}
    keys = list(context.partition_keys)
    meta["window"] = MetadataValue.text(f"{keys[0]} .. {keys[-1]}" if len(keys) > 1 else keys[0])
    if len(per_day) > 1:
        table = "| day | rows in day | look-back rows |\n|---|---|---|\n" + "\n".join(
            f"| {d} | {n} | {e} |" for d, n, e in per_day)
        meta["per_day"] = MetadataValue.md(table)
    return meta


def build_ingest_assets(partitions_def) -> list:
    crm = [build_crm_asset(o, partitions_def) for o in CRM_OBJECTS.values()]
    erp = [build_erp_table_asset(o, partitions_def) for o in ERP_DB_OBJECTS.values()]
    sources = [source_spec(o) for o in (*CRM_OBJECTS.values(), *ERP_DB_OBJECTS.values(), *ERP_EXPORT_OBJECTS.values())]
    return [*sources, *crm, *erp, build_erp_export_assets(partitions_def)]
