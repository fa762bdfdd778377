"""Dagster assets for reconciliation: one per reconciliation (recon/<name>), partitioned by day
like the rest, each with a health check; a `reconcile` job and its schedule.

The four business reconciliations read the warehouse's state as of a business date
(assets/reconcile/asof.py): a run over a range reconciles every day of it as of that day, so the
breaks open and resolve on the business days they did, exactly as the nightly runs of those days
would have; a re-run of an earlier day than the latest reconciled one records its findings and
leaves the open breaks alone. source_vs_warehouse is per partition: every day of the range is
compared with the live source on its own.
"""

import datetime as dt
from typing import Optional

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetSelection,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
    define_asset_job,
    in_process_executor,
)

from trueup.assets.asset_run import RETRY, recorded_run, step_facts
from trueup.assets.gate.definitions import validated_key
from trueup.assets.ingest.objects import ALL_OBJECTS
from trueup.assets.pools import BUSINESS_DAY_WRITES

from .config import ReconSettings
from .engine import RECON_NAMES

GROUP = "reconcile"
CHECK_NAME = "health"

# the publish asset writes ERP orders and customers (and lands them in validated) the same night:
# the deal and company reconciliations run after it, so tonight's posts are not reported missing
PUBLISH = AssetKey(["publish", "erp_orders"])
# the golden customer: reconciliation's identity of customers (assets/reconcile/identity.py)
GOLDEN = AssetKey(["marts", "dim_customer"])
READS = {
    "deals_vs_orders": [validated_key("crm_deals"), validated_key("erp_sales_orders"),
                        validated_key("erp_customers"), validated_key("crm_companies"), PUBLISH, GOLDEN],
    # after publish too: tonight's new orders are judged from the night they came into existence
    "orders_vs_invoices": [validated_key("erp_sales_orders"), validated_key("erp_invoices"),
                           AssetKey(["raw", "erp_invoices"]), AssetKey(["raw", "erp_sales_orders"]), PUBLISH],
    "invoices_vs_payments": [validated_key("erp_invoices"), validated_key("erp_payments"),
                             AssetKey(["raw", "erp_payments"]), AssetKey(["raw", "erp_invoices"])],
    "companies_vs_customers": [validated_key("crm_companies"), validated_key("erp_customers"),
                               validated_key("crm_deals"), validated_key("erp_sales_orders"), PUBLISH,
                               AssetKey(["publish", "erp_customers"]), GOLDEN],
    "source_vs_warehouse": [AssetKey(["raw", o]) for o in ALL_OBJECTS],
}
DESCRIPTIONS = {
    "deals_vs_orders": "CRM closed-won deals ↔ ERP sales orders (deal id ↔ crm_deal_id).",
    "orders_vs_invoices": "ERP orders ↔ invoices: invoiced in full, within the invoicing SLA.",
    "invoices_vs_payments": "Invoices ↔ payments: paid in full by the due date; orphan payments.",
    "companies_vs_customers": "CRM customer companies ↔ ERP customers: linked, same name and country.",
    "source_vs_warehouse": "Each source object of the day ↔ its copy in raw: counts, sums, hashes, keys.",
}


class ReconConfig(Config):
    """Per-run overrides; unset values keep the defaults of assets.reconcile.config.ReconSettings."""
    tolerance: Optional[float] = None
    order_sla_days: Optional[int] = None
    match_window_days: Optional[int] = None
    probable_amount_pct: Optional[float] = None
    invoice_sla_days: Optional[int] = None
    invoice_complete_days: Optional[int] = None
    customer_sla_days: Optional[int] = None
    money_at_risk_limit: Optional[float] = None
    objects: Optional[list[str]] = None    # source_vs_warehouse: which objects (default: all)


def recon_key(name: str) -> AssetKey:
    return AssetKey(["recon", name])


def _settings(config: ReconConfig, reporting_currency: str) -> ReconSettings:
    d = config.model_dump() if hasattr(config, "model_dump") else dict(config)
    d.pop("objects", None)
    return ReconSettings.from_dict({**d, "reporting_currency": reporting_currency})


def _largest_md(results) -> str:
    rows = []
    for r in results:
        if r.largest is not None:
            rows += r.largest.to_dict("records")
    rows = sorted(rows, key=lambda x: -float(x["amount_at_risk"] or 0))[:10]
    if not rows:
        return "no breaks"
    return "| type | key | currency | left | right | at risk |\n|---|---|---|---|---|---|\n" + "\n".join(
        f"| {x['break_type']} | {x['business_key']} | {x['currency'] or ''} | {x['left_amount']} | "
        f"{x['right_amount']} | {x['amount_at_risk']} |" for x in rows)


def build_recon_asset(name: str, partitions_def):
    key = recon_key(name)
    resources = {"warehouse", "settings"} | ({"erp", "landing", "crm"} if name == "source_vs_warehouse" else set())

    @asset(
        key=key, deps=READS[name], partitions_def=partitions_def, group_name=GROUP,
        backfill_policy=BackfillPolicy.single_run(), retry_policy=RETRY, kinds={"python", "sql"},
        pool=BUSINESS_DAY_WRITES,   # recon.breaks is a business day's state: one writer at a time
        check_specs=[AssetCheckSpec(CHECK_NAME, asset=key, blocking=False,
                                    description="WARN when new breaks open; FAIL (ERROR) when the money at risk "
                                                "passes the configured limit")],
        description=DESCRIPTIONS[name] + " Breaks in recon.breaks (stateful), runs in recon.runs.",
        required_resource_keys=resources,
    )
    def _recon(context: AssetExecutionContext, config: ReconConfig):
        from .engine import run_reconciliation, run_source_vs_warehouse

        wh = context.resources.warehouse.get()
        app = context.resources.settings.get()
        s = _settings(config, app.reporting_currency)
        partitions = list(context.partition_keys)
        facts = {p: step_facts(context, f"recon/{name}", p) for p in partitions}
        results = []
        with recorded_run(wh, facts.values()):
            if name == "source_vs_warehouse":
                from trueup.assets.ingest.echo import echo_versions

                from .sources import DEFAULT_OBJECTS, read_sources_for_days, source_lookup
                clients = {"erp_engine": context.resources.erp.engine(),
                           "landing_dir": context.resources.landing.dir(),
                           "crm_client": context.resources.crm.client()}
                lookup = source_lookup(app.timezone, wh, erp_engine=clients["erp_engine"],
                                       crm_client=clients["crm_client"])
                echoes = echo_versions(wh)
                # the sources of all the run's days in one read per object, then compared day by day
                # the first partition with the history before it, as the ingest loaded it
                by_day = read_sources_for_days(partitions, app.timezone, config.objects or DEFAULT_OBJECTS,
                                               context.assets_def.partitions_def.get_first_partition_key(),
                                               **clients)
                for p in partitions:
                    sources, skipped = by_day[p]
                    for obj, why in skipped.items():
                        context.log.warning(f"source_vs_warehouse {p}: {obj} not compared: {why}")
                    r = run_source_vs_warehouse(wh, p, context.run.run_id, sources, s, lookup, echoes)
                    facts[p].rows_read, facts[p].rows_written = r.left_rows + r.right_rows, r.breaks_found
                    results.append(r)
            else:
                # every day of the range as of that day: each partition shown as materialised was
                # reconciled as of its own business date, and breaks open and resolve on the days
                # they did (a range gives the same history as its nightly runs)
                for p in partitions:
                    r = run_reconciliation(wh, name, dt.date.fromisoformat(p), context.run.run_id, s, partition=p)
                    facts[p].rows_read, facts[p].rows_written = r.left_rows + r.right_rows, r.breaks_found
                    results.append(r)
        # the state after the run: per partition for source_vs_warehouse, the last day's for the others
        state = results if name == "source_vs_warehouse" else results[-1:]
        by_type: dict[str, int] = {}
        pending: dict[str, int] = {}
        for r in state:
            for k, v in r.by_type.items():
                by_type[k] = by_type.get(k, 0) + v
            for k, v in r.pending_by_type.items():
                pending[k] = pending.get(k, 0) + v
        opened = sum(r.breaks_opened for r in results)
        resolved = sum(r.breaks_resolved for r in results)
        risk = round(sum(r.amount_at_risk for r in state), 2)
        meta = {
            "left_rows": MetadataValue.int(sum(r.left_rows for r in state)),
            "right_rows": MetadataValue.int(sum(r.right_rows for r in state)),
            "matched": MetadataValue.int(sum(r.matched for r in state)),
            "breaks_found": MetadataValue.int(sum(r.breaks_found for r in state)),
            "breaks_opened": MetadataValue.int(opened), "breaks_resolved": MetadataValue.int(resolved),
            "breaks_by_type": MetadataValue.json(by_type),
            # not breaks: work waiting for a person, and items not yet due
            "pending_and_timing_by_type": MetadataValue.json(pending),
            f"amount_pending_{s.reporting_currency.lower()}": MetadataValue.float(
                round(sum(r.amount_pending for r in state), 2)),
            f"money_at_risk_{s.reporting_currency.lower()}": MetadataValue.float(float(risk)),
            "largest_breaks": MetadataValue.md(_largest_md(state)),
            "as_of": MetadataValue.text(results[-1].partition if results else partitions[-1]),
        }
        explained: dict[str, dict[str, int]] = {}
        for r in results:
            for o, counts in r.explained.items():
                for k, v in counts.items():
                    explained.setdefault(o, {}).setdefault(k, 0)
                    explained[o][k] += v
        if explained:   # source_vs_warehouse: landed versions the source has moved on from (no break)
            meta["changed_at_source_since_landed"] = MetadataValue.json(explained)
        if risk > s.money_at_risk_limit:
            check = AssetCheckResult(check_name=CHECK_NAME, passed=False, severity=AssetCheckSeverity.ERROR,
                                     description=f"{risk:,.2f} {s.reporting_currency} at risk exceeds the limit "
                                                 f"{s.money_at_risk_limit:,.2f}", metadata=meta)
        elif opened:
            check = AssetCheckResult(check_name=CHECK_NAME, passed=False, severity=AssetCheckSeverity.WARN,
                                     description=f"{opened} new break(s) opened", metadata=meta)
        else:
            check = AssetCheckResult(check_name=CHECK_NAME, passed=True, description="no new breaks",
                                     metadata=meta)
        return MaterializeResult(metadata=meta, check_results=[check])

    return _recon


def build_reconcile_assets(partitions_def) -> list:
    return [build_recon_asset(n, partitions_def) for n in RECON_NAMES]


def build_reconcile_job_and_schedule(partitions_def, executor_def=in_process_executor):
    # the breaks mart and the ROI marts built on it are rebuilt after the reconciliations: what an
    # analyst reads at 06:05 is what the 06:00 run found
    marts = AssetSelection.assets(AssetKey(["marts", "fct_recon_breaks"])).downstream()
    job = define_asset_job("reconcile", selection=AssetSelection.groups(GROUP) | marts, partitions_def=partitions_def,
                           executor_def=executor_def,
                           description="All reconciliations for one business day (or a range), then the breaks "
                                       "and ROI marts that read them.")
    from dagster import DefaultScheduleStatus, build_schedule_from_partitioned_job

    # on from the start, like the nightly schedule: the morning's reconciliation is part of the night
    schedule = build_schedule_from_partitioned_job(job, name="reconcile_daily", hour_of_day=6, minute_of_hour=0,
                                                   default_status=DefaultScheduleStatus.RUNNING,
                                                   tags={"trueup/trigger": "schedule"})
    return job, schedule
