"""Dagster gate assets: validated/<object> per day, each with a blocking contract check.

A blocked batch fails the check (severity ERROR, blocking) so nothing downstream runs from it
in the same run; below the threshold, failing rows are quarantined and the rest go on."""
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from trueup.assets.asset_run import RETRY, recorded_run, step_facts
from trueup.assets.pools import BUSINESS_DAY_WRITES
from trueup.quality.contracts import INBOUND
from trueup.quality.contracts.rules import Contract
from trueup.quality.data_docs import index_url as data_docs_index_url
from trueup.quality.reports import index_url, report_url

# which raw objects a contract's reference sets read (so lineage and run order follow them)
REFERENCE_DEPS = {
    "crm_company_ids": "crm_companies", "erp_customer_numbers": "erp_customers",
    "erp_order_numbers": "erp_sales_orders", "erp_invoice_numbers": "erp_invoices",
}
CHECK_NAME = "contract"


def validated_key(obj: str) -> AssetKey:
    return AssetKey(["validated", obj])


def build_gate_asset(contract: Contract, partitions_def):
    key = validated_key(contract.object)
    deps = [AssetKey(["raw", contract.object])] + [AssetKey(["raw", REFERENCE_DEPS[r]])
                                                   for r in sorted(contract.references)]

    @asset(
        key=key, deps=list(dict.fromkeys(deps)), partitions_def=partitions_def, group_name="gate",
        backfill_policy=BackfillPolicy.single_run(), retry_policy=RETRY, kinds={"python", "greatexpectations"},
        pool=BUSINESS_DAY_WRITES,
        check_specs=[AssetCheckSpec(CHECK_NAME, asset=key, blocking=True,
                                    description=f"{contract.name} v{contract.version}: blocks the batch when more "
                                                f"than {contract.block_threshold:.0%} of its rows fail")],
        description=f"Rows of raw.{contract.object} that pass the {contract.name} contract "
                    f"(v{contract.version}); failing rows go to quality.quarantine.",
        required_resource_keys={"warehouse", "settings"},
        metadata={"contract": contract.name, "contract_version": contract.version},
    )
    def _gate(context: AssetExecutionContext):
        from trueup.assets.gate.late_references import recheck_late_references
        from trueup.assets.gate.run_gate import gate_partitions
        from trueup.quality.gx_suites import GxValidator

        wh = context.resources.warehouse.get()
        settings = context.resources.settings.get()
        reports = settings.reports_dir
        validator = GxValidator()
        totals = {"rows_in": 0, "rows_passed": 0, "rows_quarantined": 0}
        failures: dict[str, int] = {}
        blocked, report = [], None
        partitions = list(context.partition_keys)
        facts = {p: step_facts(context, f"validated/{contract.object}", p) for p in partitions}
        with recorded_run(wh, facts.values()):
            results = gate_partitions(wh, contract, partitions, context.run.run_id, reports, validator,
                                      scratch_dir=settings.scratch_dir, data_docs=settings.gx_data_docs)
            # rows held only for a reference that has landed since (assets/gate/late_references.py)
            released_late = recheck_late_references(wh, contract, context.run.run_id, validator)
            if released_late:
                context.log.info(f"{released_late} row(s) quarantined only for a reference that has landed "
                                 f"since: released")
            for partition, (outcome, report) in results.items():
                f = facts[partition]
                f.rows_read, f.rows_written, f.rows_quarantined = (outcome.rows_in, outcome.rows_passed,
                                                                   outcome.rows_quarantined)
                totals["rows_in"] += outcome.rows_in
                totals["rows_passed"] += outcome.rows_passed
                totals["rows_quarantined"] += outcome.rows_quarantined
                for k, v in outcome.unexpected_counts.items():
                    failures[k] = failures.get(k, 0) + v
                if outcome.blocked:
                    blocked.append(f"{partition}: {outcome.block_reason}")
                    context.log.error(outcome.block_reason)
        top = sorted(((k, v) for k, v in failures.items() if v), key=lambda kv: -kv[1])[:8]
        table = "| expectation | failing rows |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in top)
        meta = {**{k: MetadataValue.int(v) for k, v in totals.items()},
                "top_failing_expectations": MetadataValue.md(table if top else "none"),
                "released_late_references": MetadataValue.int(released_late),
                "contract_version": contract.version}
        if report is not None:   # the last day's page of this step; the URL opens while `trueup docs` serves
            meta["report"] = MetadataValue.path(str(report))
            meta["report_url"] = MetadataValue.url(report_url(contract.name, report.stem))
            meta["all_reports_url"] = MetadataValue.url(index_url())
            if outcome.data_docs_url:   # GX's own page of the same result, and its site's index
                meta["data_docs_url"] = MetadataValue.url(outcome.data_docs_url)
                meta["data_docs_index_url"] = MetadataValue.url(data_docs_index_url())
            meta["seconds_by_phase"] = MetadataValue.json(outcome.phase_seconds)
        check = AssetCheckResult(
            check_name=CHECK_NAME, passed=not blocked, severity=AssetCheckSeverity.ERROR,
            description=blocked[0] if blocked else f"{totals['rows_quarantined']} of {totals['rows_in']} rows "
                                                   f"quarantined; batch within threshold",
            metadata={**meta, "blocked_batches": MetadataValue.json(blocked)})
        return MaterializeResult(metadata=meta, check_results=[check])

    return _gate


def build_gate_assets(partitions_def) -> list:
    return [build_gate_asset(c, partitions_def) for c in INBOUND.values()]
