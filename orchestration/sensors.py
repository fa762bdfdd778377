"""The ERP export sensor: a complete export (manifest present, checksums and row counts
match) starts its ingestion; an incomplete or corrupt one is reported with its reason
in the sensor's tick and tried again on later ticks, so a fixed export is picked up."""

import json

from dagster import DefaultSensorStatus, RunRequest, SensorEvaluationContext, SensorResult, SkipReason, sensor

from trueup.orchestration.resources import LandingResource, WarehouseResource


def build_export_sensor(job, partitions_def):
    @sensor(job=job, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
            description="Starts erp_export_ingest for each complete ERP export not yet loaded.")
    def erp_export_sensor(context: SensorEvaluationContext, warehouse: WarehouseResource,
                          landing: LandingResource):
        from trueup.assets.ingest.erp_extract import manifest_digest
        from trueup.assets.ingest.export_log import loaded_digests
        from trueup.connectors.erp_exports import list_exports
        from trueup.connectors.errors import TransientError

        requested = json.loads(context.cursor) if context.cursor else {}
        try:
            with warehouse.session(lock_timeout_s=2) as wh:   # a tick does not wait for a run's lock
                loaded = loaded_digests(wh)
        except TransientError:
            return SkipReason("warehouse busy (another process holds the DuckDB lock); will look again")
        valid_keys = set(partitions_def.get_partition_keys())
        first_day = partitions_def.get_first_partition_key()
        requests, rejected = [], []
        for check in list_exports(landing.dir()):
            day = check.folder.name
            # an export dated before the first business day is loaded by the first partition's
            # run (the initial load: assets/ingest/history.py)
            key = first_day if first_day and day < first_day else day
            if key not in valid_keys:
                continue
            if not check.ok:
                rejected.append(f"{day}: {check.reason}")
                continue
            digest = manifest_digest(check)
            if loaded.get(day) == digest or requested.get(day) == digest:
                continue
            requested[day] = digest
            if any(r.partition_key == key for r in requests):
                continue   # the first partition's one run loads every export before it
            requests.append(RunRequest(run_key=f"erp-export-{day}-{digest[:12]}", partition_key=key,
                                       tags={"trueup/business_date": key, "trueup/trigger": "export_sensor"}))
        for line in rejected:
            context.log.warning(f"ERP export rejected: {line}")
        if not requests:
            reason = "no new complete export"
            if rejected:
                reason += "; rejected: " + "; ".join(rejected[:5]) + (" …" if len(rejected) > 5 else "")
            return SensorResult(skip_reason=reason, cursor=json.dumps(requested))
        return SensorResult(run_requests=requests, cursor=json.dumps(requested))

    return erp_export_sensor
