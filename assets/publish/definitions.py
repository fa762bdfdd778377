"""Dagster publish asset: closed-won deals become ERP customers and orders, and the CRM
learns the numbers — through the ledger, idempotently. Also the jobs a person uses on writes
waiting for them: approve_write (awaiting approval) and resolve_held_write (held)."""
import re
from typing import Literal, Optional

import dagster as dg
from dagster import AssetExecutionContext, AssetKey, BackfillPolicy, Config, MaterializeResult, MetadataValue

from trueup.assets.asset_run import recorded_run, step_facts
from trueup.assets.pools import BUSINESS_DAY_WRITES
from trueup.assets.publish.policy import DEFAULT_APPROVAL_THRESHOLD


class PublishConfig(Config):
    dry_run: bool = False                 # report what would be written, write nothing
    approval_threshold: float = DEFAULT_APPROVAL_THRESHOLD  # reporting currency; larger deals wait for a person


#: what one publishing pass writes, each its own asset so the lineage shows it (one op runs them all)
ERP_CUSTOMERS = AssetKey(["publish", "erp_customers"])
ERP_ORDERS = AssetKey(["publish", "erp_orders"])
CRM_WRITEBACKS = AssetKey(["publish", "crm_writebacks"])
CRM_FINANCIALS = AssetKey(["publish", "crm_financials"])
OUTPUTS = {
    ERP_CUSTOMERS: "ERP customers created for the customer companies of closed-won deals that the ERP does not "
                   "have yet (golden customer: marts.dim_customer). Read back into raw/validated erp_customers.",
    ERP_ORDERS: "ERP sales orders for closed-won deals (closed on or after go-live) that have none; held and "
                "awaiting-approval deals wait in the ledger. Read back into raw/validated erp_sales_orders.",
    CRM_WRITEBACKS: "The ERP numbers written back to the CRM: erp_order_number on the deal, erp_customer_number on "
                    "the company.",
    CRM_FINANCIALS: "Receivables written to the CRM companies (open invoices, amounts due, last payment), from the "
                    "ERP export; unchanged payloads are not sent again.",
}


def build_publish_assets(partitions_def) -> list:
    @dg.multi_asset(
        name="publish__erp_orders", partitions_def=partitions_def, group_name="publish", can_subset=False,
        outs={key.path[-1]: dg.AssetOut(key=key, description=text,
                                        kinds={"python", "sql" if key.path[-1].startswith("erp") else "hubspot"})
              for key, text in OUTPUTS.items()},
        deps=[AssetKey(["validated", "crm_deals"]), AssetKey(["validated", "crm_companies"]),
              AssetKey(["validated", "erp_customers"]), AssetKey(["validated", "erp_sales_orders"]),
              AssetKey(["marts", "dim_customer"])],
        backfill_policy=BackfillPolicy.single_run(), pool=BUSINESS_DAY_WRITES,
        description="One publishing pass: ERP customers and sales orders for closed-won deals, then the ERP numbers "
                    "and the receivables written back to the CRM. Every write goes through the ledger "
                    "(ops.sor_writes), idempotently.",
        required_resource_keys={"warehouse", "crm", "erp", "settings"},
    )
    def erp_orders(context: AssetExecutionContext, config: PublishConfig):
        import datetime as dt

        from trueup.assets.publish.run import publish

        settings = context.resources.settings.get()
        wh = context.resources.warehouse.get()
        through = dt.date.fromisoformat(max(context.partition_keys))
        facts = [step_facts(context, "publish/erp_orders", p) for p in context.partition_keys]
        with recorded_run(wh, facts) as run:
            s = publish(wh, context.resources.erp.engine(), context.resources.crm.client(), home=settings.home,
                        through=through, first_day=dt.date.fromisoformat(min(context.partition_keys)),
                        publish_from=settings.publish_from,
                        reporting_currency=settings.reporting_currency, run_id=context.run.run_id,
                        tz=settings.timezone, nightly_at=settings.nightly_at,
                        dry_run=config.dry_run, approval_threshold=config.approval_threshold,
                        correlation_id=context.run.tags.get("trueup/correlation_id"),
                        alert_after=dt.timedelta(hours=settings.write_alert_after_hours))
            run.record_success = not config.dry_run
            last = facts[-1]  # the pass publishes everything due up to the last day
            last.rows_written = s.customers_created + s.orders_created + s.crm_updates + s.crm_financials
            last.rows_quarantined = s.quarantined
        meta = {"dry_run": config.dry_run, **report_publish(context, wh, settings, s, max(context.partition_keys))}
        yield MaterializeResult(asset_key=ERP_CUSTOMERS, metadata={
            "dry_run": config.dry_run, "customers_created": s.customers_created})
        yield MaterializeResult(asset_key=ERP_ORDERS, metadata=meta)
        yield MaterializeResult(asset_key=CRM_WRITEBACKS, metadata={
            "dry_run": config.dry_run, "crm_updates": s.crm_updates, "unknown": s.unknown,
            "retry_later": s.retry_later})
        yield MaterializeResult(asset_key=CRM_FINANCIALS, metadata={
            "dry_run": config.dry_run, "crm_company_financials": s.crm_financials})

    return [erp_orders]


def report_publish(context, wh, settings, s, partition: str) -> dict:
    """What a publish pass tells the operator (the publish asset's and the intraday run's): warnings
    for writes waiting on a target or a person, one alert per write failing for too long, and the
    metadata of the step."""
    if s.retry_later:
        context.log.warning(f"{s.retry_later} write(s) failed transiently (the target was unreachable or "
                            f"overloaded); later runs send them again")
    if s.failing_too_long:
        from trueup.connectors.alert_sink import record_alert

        for f in s.failing_too_long:
            record_alert(wh, run_id=context.run.run_id, job=context.run.job_name, partition=partition,
                         message=f"write {f['idempotency_key']} to the {f['target_system']} has been failing since "
                                 f"{f['failing_since']} ({f['attempts']} attempts): {f['error']}",
                         error_class="transient", webhook_url=settings.alert_webhook_url)
    if s.held:
        context.log.warning(f"{len(s.held)} deal(s) held for a person: "
                            + "; ".join(f"{k}: {why}" for k, why in s.held[:10]))
    held = "| deal | why held |\n|---|---|\n" + "\n".join(f"| {k} | {w} |" for k, w in s.held[:20])
    return {
        "customers_created": s.customers_created,
        "orders_created": s.orders_created, "crm_updates": s.crm_updates,
        "crm_company_financials": s.crm_financials, "rejected": s.rejected,
        "unknown": s.unknown, "retry_later": s.retry_later, "resolved_from_earlier_runs": s.resolved_from_earlier_runs,
        "quarantined": s.quarantined, "awaiting_approval": MetadataValue.json(s.awaiting_approval),
        "held": MetadataValue.md(held if s.held else "none"), "before_golive_not_posted": s.before_golive,
        "sample": MetadataValue.json(s.sample),
    }


class ApproveConfig(Config):
    idempotency_key: str   # e.g. erp-order:crm-deal:20000123
    actor: str


@dg.op(required_resource_keys={"warehouse"})
def approve_write_op(context: dg.OpExecutionContext, config: ApproveConfig) -> str:
    from trueup.assets.publish.ledger import approve

    p = approve(context.resources.warehouse.get(), config.idempotency_key, config.actor)
    if p is None:
        raise dg.Failure(f"no write awaiting approval with key {config.idempotency_key}", allow_retries=False)
    what = (f"{p.get('total_amount')} {p.get('currency')} for customer {p.get('customer_number')}"
            if "total_amount" in p else f"payload {p['payload_hash']}")
    context.log.info(f"{config.actor} approved {config.idempotency_key} ({what}); the next publish run sends it")
    return (f"approved {config.idempotency_key}: {what} (by {config.actor}); the next publish run sends it; "
            f"a change to the deal needs a new approval")


@dg.job(description="Release a write held for approval (audited: who and when).")
def approve_write():
    approve_write_op()


class ResolveHeldWriteConfig(Config):
    idempotency_key: str                          # e.g. erp-order:crm-deal:20000123 (see `trueup writes list`)
    action: Literal["release", "link", "undo"]    # send it after all / it is an existing ERP order / take back
    actor: str                                    # who decides (recorded in ops.sor_writes.decided_by)
    order_number: Optional[str] = None            # link only: the existing ERP order, SO-<digits>


@dg.op(required_resource_keys={"warehouse"})
def resolve_held_write_op(context: dg.OpExecutionContext, config: ResolveHeldWriteConfig) -> str:
    """The UI's way to what `trueup writes release|link|undo` does: the same ledger decisions."""
    from trueup.assets.publish.ledger import decide, undo

    key, order = config.idempotency_key, (config.order_number or "").strip() or None
    if not config.actor.strip():
        raise dg.Failure("resolving a held write needs an actor (who decides)", allow_retries=False)
    if config.action == "link":
        if order is None:
            raise dg.Failure(f"linking {key} needs order_number: the ERP order it already is (SO-<digits>)",
                             allow_retries=False)
        if not re.fullmatch(r"SO-\d+", order):
            raise dg.Failure(f"order_number {order!r} is not an ERP order number (SO-<digits>)", allow_retries=False)
    elif order is not None:
        raise dg.Failure(f"order_number is only for action link, not {config.action}", allow_retries=False)
    wh = context.resources.warehouse.get()
    try:
        if config.action == "undo":
            text = undo(wh, key, config.actor)
        else:
            text = decide(wh, key, config.actor, config.action, order) + (
                "; the next publish run sends it" if config.action == "release" else "; nothing will be sent for it")
    except (LookupError, ValueError) as exc:
        raise dg.Failure(str(exc), allow_retries=False) from None
    context.log.info(text)
    return text


@dg.job(description="Resolve a write held for a person (possible manual duplicate, ambiguous customer): release it, "
                    "link it to the existing ERP order, or undo either; recorded in ops.sor_writes with actor and time.")
def resolve_held_write():
    resolve_held_write_op()
