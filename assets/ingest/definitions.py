"""Dagster assets for ingestion: one per source object, partitioned by business day.

A single-run backfill policy lets a range of days run in one run. raw is a log of observed
versions: a re-run adds what it sees and removes nothing. Transient failures are retried by
the retry policy, permanent ones fail at once with a one-line reason.
"""

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetOut,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from trueup.assets.asset_run import RETRY, recorded_run, step_facts
from trueup.assets.pools import BUSINESS_DAY_WRITES
from trueup.connectors.errors import classify

from .objects import CRM_OBJECTS, ERP_DB_OBJECTS, ERP_EXPORT_OBJECTS, SourceObject


def raw_key(obj: SourceObject) -> AssetKey:
    return AssetKey(["raw", obj.name])


def source_spec(obj: SourceObject) -> AssetSpec:
    """The record set in the source system, shown upstream of its raw copy in the lineage."""
    system = {"crm": "CRM (HubSpot API)", "erp_db": "ERP database", "erp_export": "ERP nightly export"}[obj.system]
    kind = {"crm": "hubspot", "erp_db": "sql", "erp_export": "csv"}[obj.system]
    return AssetSpec(key=AssetKey(["source", obj.name]), group_name="sources", kinds={kind},
                     description=f"{obj.source_name} in the {system} — external, read by raw/{obj.name}")


def _windows(context: AssetExecutionContext):
    """(day, start, end) of each partition of the run; the first partition's opens at the
    beginning of time (the initial load: history.py)."""
    from .history import windows_with_history

    pdef = context.assets_def.partitions_def
    windows = [(key, w.start, w.end) for key in context.partition_keys
               for w in [pdef.time_window_for_partition_key(key)]]
    return windows_with_history(windows, pdef.get_first_partition_key())


def build_crm_asset(obj: SourceObject, partitions_def):
    @asset(
        key=raw_key(obj), deps=[source_spec(obj).key], partitions_def=partitions_def, group_name="ingest_crm",
        backfill_policy=BackfillPolicy.single_run(), retry_policy=RETRY, kinds={"python", "hubspot"},
        pool=BUSINESS_DAY_WRITES,
        description=f"CRM {obj.source_name} modified each day (incremental search + archived tombstones), "
                    f"landed in raw.{obj.name}; raw.{obj.current_view} holds the current state.",
        required_resource_keys={"warehouse", "crm", "settings"},
    )
    def _crm_asset(context: AssetExecutionContext) -> MaterializeResult:
        from .incremental import ingest_crm

        wh = context.resources.warehouse.get()
        tz = context.resources.settings.get().timezone
        windows = list(_windows(context))
        facts = _window_facts(context, obj, windows)
        with recorded_run(wh, facts.values()):
            # the run's first client checks the CRM once (a refusal fails here, recorded like any failure)
            client = context.resources.crm.client()
            result = ingest_crm(wh, client, obj, windows, tz, context.run.run_id)
            _fill_facts(facts, result, windows)
        totals = {**_totals(facts), "echo_rows_not_business_changes": sum(f.rows_echo for f in facts.values()),
                  "requests": result.stats.get("requests", 0), "retries": result.stats.get("retries", 0),
                  "pages": result.stats.get("pages", 0)}
        return MaterializeResult(metadata=_metadata(context, totals, result, windows))

    return _crm_asset


def build_erp_table_asset(obj: SourceObject, partitions_def):
    @asset(
        key=raw_key(obj), deps=[source_spec(obj).key], partitions_def=partitions_def, group_name="ingest_erp",
        backfill_policy=BackfillPolicy.single_run(), retry_policy=RETRY, kinds={"python", "sql"},
        pool=BUSINESS_DAY_WRITES,
        description=f"ERP table {obj.source_name}: rows changed each day (updated_at window with look-back), "
                    f"landed in raw.{obj.name}; raw.{obj.current_view} holds the current state.",
        required_resource_keys={"warehouse", "erp", "settings"},
    )
    def _erp_asset(context: AssetExecutionContext) -> MaterializeResult:
        from .incremental import ingest_erp_table

        wh, engine = context.resources.warehouse.get(), context.resources.erp.engine()
        tz = context.resources.settings.get().timezone
        windows = list(_windows(context))
        facts = _window_facts(context, obj, windows)
        with recorded_run(wh, facts.values()):
            result = ingest_erp_table(wh, engine, obj, windows, tz, context.run.run_id)
            _fill_facts(facts, result, windows)
        if result.new_source_columns:
            context.log.warning(f"ERP table {obj.source_name} has new column(s) carried along: "
                                f"{sorted(result.new_source_columns)}")
        return MaterializeResult(metadata={**_metadata(context, _totals(facts), result, windows),
                                           "new_source_columns": MetadataValue.json(sorted(result.new_source_columns))})

    return _erp_asset


def build_erp_export_assets(partitions_def):
    objs = ERP_EXPORT_OBJECTS

    @multi_asset(
        name="erp_exports", outs={o.name: AssetOut(key=raw_key(o), group_name="ingest_erp", kinds={"python", "csv"},
                                                   description=f"ERP export {o.source_name}.csv of each day, "
                                                   f"landed in raw.{o.name} once the export verifies")
                                  for o in objs.values()},
        deps=[source_spec(o).key for o in objs.values()], partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.single_run(), retry_policy=RETRY, can_subset=False,
        pool=BUSINESS_DAY_WRITES,
        required_resource_keys={"warehouse", "landing"},
    )
    def _exports(context: AssetExecutionContext):
        from .erp_extract import manifest_digest, read_verified_export
        from .export_log import record_export_loads
        from .history import export_folders, exports_as_one
        from .raw_store import land_partitions

        wh, landing = context.resources.warehouse.get(), context.resources.landing.dir()
        by_name = {o.name: o for o in objs.values()}
        frames: dict[str, dict[str, object]] = {name: {} for name in by_name}
        drift: dict[str, set] = {name: set() for name in by_name}
        loads, rejected = [], []
        first_day = context.assets_def.partitions_def.get_first_partition_key()
        with recorded_run(wh, []) as run:
            for key in context.partition_keys:
                f = step_facts(context, "raw/erp_exports", key)
                run.facts.append(f)
                # the first partition also loads the exports dated before it (the initial load: history.py)
                read = {}
                for folder in export_folders(landing, key, first_day):
                    check = None
                    try:
                        check, day_frames, new_cols = read_verified_export(landing, folder, by_name)
                    except Exception as exc:
                        if classify(exc) == "transient":
                            raise  # the retry policy re-runs the step
                        # a bad export is rejected whole (with it, the partition that loads it); the
                        # other days of the range still load
                        loads.append((folder, manifest_digest(check) if check else None, "rejected", str(exc), {}))
                        context.log.error(str(exc))
                        rejected.append(str(exc))
                        run.reject(f, exc)
                        break
                    read[folder] = (check, day_frames, new_cols)
                else:
                    for folder, (check, day_frames, new_cols) in read.items():
                        for name, df in day_frames.items():
                            drift[name].update(new_cols[name])
                            f.rows_read += len(df)
                        loads.append((folder, manifest_digest(check), "loaded", None, check.rows))
                    for name in by_name:
                        frames[name][key] = exports_as_one([day_frames[name] for _c, day_frames, _n in read.values()])
                        f.rows_written += len(frames[name][key])
            for name, obj in by_name.items():
                if frames[name]:
                    land_partitions(wh, obj, frames[name], context.run.run_id,
                                    lambda p, n=obj.source_name: f"erp_export:{p}/{n}.csv")
        record_export_loads(wh, loads, context.run.run_id)
        if rejected:
            raise Failure(description=rejected[0] if len(rejected) == 1 else
                          f"{len(rejected)} ERP exports rejected: " + " | ".join(rejected), allow_retries=False,
                          metadata={"rejected": MetadataValue.json(rejected)})
        for o in objs.values():
            if drift[o.name]:
                context.log.warning(f"{o.source_name}.csv has new column(s) carried along: {sorted(drift[o.name])}")
            n = sum(len(df) for df in frames[o.name].values())
            yield MaterializeResult(asset_key=raw_key(o), metadata={
                "rows_read": n, "rows_written": n,
                "partitions": MetadataValue.json(list(context.partition_keys)),
                "new_source_columns": MetadataValue.json(sorted(drift[o.name])),
            })

    return _exports


def _window_facts(context: AssetExecutionContext, obj: SourceObject, windows) -> dict:
    facts = {key: step_facts(context, f"raw/{obj.name}", key) for key, _, _ in windows}
    for key, start, end in windows:
        facts[key].window_start, facts[key].window_end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    return facts


def _fill_facts(facts: dict, result, windows) -> None:
    """Per day of the range: versions read and newly landed. Look-back versions belong to an
    earlier day outside the range: they count on the range's first day, where they were read."""
    first = windows[0][0]
    for day, landed in result.days.items():
        f = facts.get(day, facts[first])
        f.rows_read += landed.rows_seen
        f.rows_written += landed.rows_written
        f.rows_echo += result.echoes.get(day, 0)
    facts[first].pages, facts[first].retries = result.stats.get("pages", 0), result.stats.get("retries", 0)


def _totals(facts: dict) -> dict:
    return {"rows_read": sum(f.rows_read for f in facts.values()),
            "rows_written": sum(f.rows_written for f in facts.values())}


def _metadata(context, totals: dict, result, windows) -> dict:
    meta = {k: MetadataValue.int(int(v)) for k, v in totals.items()}
    keys = list(context.partition_keys)
    meta["window"] = MetadataValue.text(f"{keys[0]} .. {keys[-1]}" if len(keys) > 1 else keys[0])
    in_range = set(keys)
    meta["rows_already_held"] = MetadataValue.int(sum(r.rows_seen - r.rows_written for r in result.days.values()))
    if len(keys) > 1:
        table = "| day | versions read | new versions |\n|---|---|---|\n" + "\n".join(
            f"| {d}{'' if d in in_range else ' (look-back)'} | {r.rows_seen} | {r.rows_written} |"
            for d, r in sorted(result.days.items()))
        meta["per_day"] = MetadataValue.md(table)
    return meta


def build_ingest_assets(partitions_def) -> list:
    crm = [build_crm_asset(o, partitions_def) for o in CRM_OBJECTS.values()]
    erp = [build_erp_table_asset(o, partitions_def) for o in ERP_DB_OBJECTS.values()]
    sources = [source_spec(o) for o in (*CRM_OBJECTS.values(), *ERP_DB_OBJECTS.values(), *ERP_EXPORT_OBJECTS.values())]
    return [*sources, *crm, *erp, build_erp_export_assets(partitions_def)]
