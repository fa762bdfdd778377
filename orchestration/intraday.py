"""The intraday path: a sensor that looks at the CRM every few minutes for deals that closed won,
and the `intraday_publish` job it starts for them — the same ingest, gates, ledger, holds and
approvals as the night, for the current business day (assets/publish/intraday.py has the steps
and what they leave to the night).

Runs by default when TRUEUP_INTRADAY is on (production configuration), stopped otherwise (the
demo's simulated history, and the default); TRUEUP_INTRADAY_INTERVAL_SECONDS sets how often it
looks. Every step of the job belongs to the pool `business_day_writes`, so a run waits in the
queue while a night (or any other run writing business days) is in progress, and the runs carry
the tag `trueup/business_date`, so two runs of one day never run side by side.
"""

import datetime as dt
import hashlib
import uuid
from typing import Callable, Optional

from dagster import (
    Config,
    DefaultSensorStatus,
    Failure,
    In,
    MetadataValue,
    OpExecutionContext,
    Out,
    Output,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    in_process_executor,
    job,
    op,
    sensor,
)

from trueup.assets.asset_run import RETRY, recorded_run, step_facts
from trueup.assets.pools import BUSINESS_DAY_WRITES
from trueup.assets.publish.run import DEFAULT_APPROVAL_THRESHOLD
from trueup.orchestration.resources import CrmResource, SettingsResource

JOB_NAME = "intraday_publish"
SENSOR_NAME = "intraday_closed_won_sensor"
CONFIG_OP = "intraday_crm_ingest"      # the op that takes the run's config (the deals, the day)


class IntradayConfig(Config):
    deal_ids: list[str]                     # the deals the sensor found closed won (CRM ids)
    business_date: str                      # the business day the run belongs to (today), YYYY-MM-DD
    as_of: Optional[str] = None             # a simulated world's clock (ISO); unset: the wall clock
    approval_threshold: float = DEFAULT_APPROVAL_THRESHOLD   # the night's (publish/erp_orders) default


def run_config(deal_ids: list[str], business_date: str, as_of: str | None = None) -> dict:
    """The run config of an intraday run for these deals (the sensor's; the launchpad takes the same)."""
    cfg: dict = {"deal_ids": sorted(deal_ids), "business_date": business_date}
    if as_of:
        cfg["as_of"] = as_of
    return {"ops": {CONFIG_OP: {"config": cfg}}}


@op(name=CONFIG_OP, pool=BUSINESS_DAY_WRITES, retry_policy=RETRY, out=Out(dict),
    required_resource_keys={"warehouse", "crm", "settings"},
    description="The CRM's companies and deals modified during the business day so far, into raw "
                "(the nightly ingestion over the day's window; raw keeps every version, so the night adds "
                "only what it has not seen).")
def intraday_crm_ingest(context: OpExecutionContext, config: IntradayConfig):
    from trueup.assets.publish.intraday import OBJECTS, day_window, ingest_day
    from trueup.assets.publish.ledger import now as wall_now

    day = dt.date.fromisoformat(config.business_date)
    wh = context.resources.warehouse.get()
    tz = context.resources.settings.get().timezone
    start, end = day_window(day, tz)
    facts = {name: step_facts(context, f"raw/{name}", day.isoformat()) for name in OBJECTS}
    for f in facts.values():
        f.window_start, f.window_end = start.replace(tzinfo=None), end.replace(tzinfo=None)
    with recorded_run(wh, facts.values()):
        results = ingest_day(wh, context.resources.crm.client(), day, tz, context.run.run_id)
        for name, r in results.items():
            f = facts[name]
            f.rows_read = sum(d.rows_seen for d in r.days.values())
            f.rows_written = sum(d.rows_written for d in r.days.values())
            f.rows_echo = sum(r.echoes.values())
            f.pages, f.retries = r.stats.get("pages", 0), r.stats.get("retries", 0)
    scope = {"deal_ids": list(config.deal_ids), "business_date": config.business_date, "as_of": config.as_of,
             "approval_threshold": config.approval_threshold, "started_at": wall_now().isoformat()}
    yield Output(scope, metadata={
        "business_date": config.business_date, "deals": MetadataValue.json(sorted(config.deal_ids)),
        **{f"{name}_versions_read": facts[name].rows_read for name in OBJECTS},
        **{f"{name}_versions_new": facts[name].rows_written for name in OBJECTS},
        "crm_requests": sum(r.stats.get("requests", 0) for r in results.values()),
    })


@op(pool=BUSINESS_DAY_WRITES, retry_policy=RETRY, out=Out(dict), required_resource_keys={"warehouse", "settings"},
    description="The inbound contracts of the day's companies and deals (the gate assets' function): validated "
                "rows, quarantine; a blocked batch fails the run before anything is published.")
def intraday_gate(context: OpExecutionContext, scope: dict):
    from trueup.assets.publish.intraday import gate_day

    day = dt.date.fromisoformat(scope["business_date"])
    wh, settings = context.resources.warehouse.get(), context.resources.settings.get()
    # a failure is recorded against the deals' gate (the one this run exists for)
    with recorded_run(wh, [step_facts(context, "validated/crm_deals", day.isoformat())]) as run:
        results, blocked = gate_day(wh, day, context.run.run_id, settings.reports_dir, settings.scratch_dir,
                                    data_docs=settings.gx_data_docs)
        facts = []
        for name, (outcome, _report) in results.items():
            f = step_facts(context, f"validated/{name}", day.isoformat())
            f.rows_read, f.rows_written, f.rows_quarantined = (outcome.rows_in, outcome.rows_passed,
                                                               outcome.rows_quarantined)
            facts.append(f)
        run.facts[:] = facts
    if blocked:
        raise Failure(description="gate blocked: " + "; ".join(blocked) + " — nothing published; the night's run "
                                  "gates the day again", allow_retries=False)
    yield Output(scope, metadata={
        **{f"{f.asset}_passed": f.rows_written for f in facts},
        **{f"{f.asset}_quarantined": f.rows_quarantined for f in facts},
    })


@op(pool=BUSINESS_DAY_WRITES, ins={"scope": In(dict)}, out=Out(dict),
    required_resource_keys={"warehouse", "crm", "erp", "settings"},
    description="The publish pass (publish/erp_orders' function) for the deals the sensor found: same plan, "
                "outbound contracts, ledger, holds and approvals; stamped with the moment the writes are made.")
def intraday_publish_deals(context: OpExecutionContext, scope: dict):
    from trueup.assets.publish.definitions import report_publish
    from trueup.assets.publish.intraday import business_clock
    from trueup.assets.publish.run import publish

    settings = context.resources.settings.get()
    wh = context.resources.warehouse.get()
    day = dt.date.fromisoformat(scope["business_date"])
    as_of = dt.datetime.fromisoformat(scope["as_of"]) if scope.get("as_of") else None
    clock = business_clock(as_of, dt.datetime.fromisoformat(scope["started_at"]))
    f = step_facts(context, "publish/erp_orders", day.isoformat())
    with recorded_run(wh, [f]):
        s = publish(wh, context.resources.erp.engine(), context.resources.crm.client(), home=settings.home,
                    through=day, first_day=day, publish_from=settings.publish_from,
                    reporting_currency=settings.reporting_currency, run_id=context.run.run_id, tz=settings.timezone,
                    approval_threshold=scope["approval_threshold"],
                    correlation_id=context.run.tags.get("trueup/correlation_id"),
                    alert_after=dt.timedelta(hours=settings.write_alert_after_hours),
                    only_deals=scope["deal_ids"], create_customers=False, financials=False, clock=clock)
        f.rows_written, f.rows_quarantined = s.customers_created + s.orders_created + s.crm_updates, s.quarantined
    if s.left_for_nightly:
        context.log.info(f"{len(s.left_for_nightly)} deal(s) need an ERP customer the ERP does not have yet; "
                         f"the night's run decides (golden customer): {', '.join(s.left_for_nightly[:10])}")
    yield Output({"orders_created": s.orders_created, "awaiting_approval": len(s.awaiting_approval),
                  "held": len(s.held), "left_for_nightly": list(s.left_for_nightly)},
                 metadata={**report_publish(context, wh, settings, s, day.isoformat()),
                           "left_for_nightly": MetadataValue.json(s.left_for_nightly)})


@job(name=JOB_NAME, executor_def=in_process_executor,
     description="Intraday: newly closed-won deals to the ERP within minutes — today's CRM companies and deals "
                 "ingested and gated, then the publish pass for those deals (started by the intraday sensor).")
def intraday_publish():
    intraday_publish_deals(intraday_gate(intraday_crm_ingest()))


def build_intraday_sensor(job_def, *, running: bool, interval_seconds: int,
                          clock: Callable[[], dt.datetime] | None = None):
    """`clock` (aware): a simulated world's business clock — the sensor looks as of that time and
    passes it to the run (`as_of`). Production leaves it unset: the wall clock."""

    @sensor(name=SENSOR_NAME, job=job_def, minimum_interval_seconds=interval_seconds,
            default_status=DefaultSensorStatus.RUNNING if running else DefaultSensorStatus.STOPPED,
            description="Every few minutes: CRM deals that closed won since the last look (search by "
                        "hs_lastmodifieddate; cursor = the newest change seen) start intraday_publish for "
                        "those deals. On by default when TRUEUP_INTRADAY is on.")
    def intraday_closed_won_sensor(context: SensorEvaluationContext, settings: SettingsResource,
                                   crm: CrmResource):
        from trueup.assets.publish.intraday import Cursor, look_for_closed_won
        from trueup.connectors.errors import classify

        config = settings.get()
        now = clock() if clock else dt.datetime.now(dt.timezone.utc)
        cursor = Cursor.from_json(context.cursor)
        # a quick look: few retries, a short timeout (the next tick looks again)
        with crm.quick_client(max_retries=2, timeout=10) as client:
            try:
                look = look_for_closed_won(client, cursor, now, config.timezone, config.publish_from)
            except Exception as exc:
                if classify(exc) == "transient":    # the CRM busy or down: look again next time, from the same place
                    return SkipReason(f"CRM unavailable ({exc}); will look again")
                raise
        since = dt.datetime.fromtimestamp(look.since_ms / 1000, dt.timezone.utc).strftime("%H:%M:%S UTC")
        if not look.found:
            return SensorResult(skip_reason=f"no deal closed won since {since} ({look.modified} deal(s) modified)",
                                cursor=look.cursor.to_json())
        day = look.day.isoformat()
        ids = sorted(look.found)
        digest = hashlib.sha256(",".join(f"{i}@{look.found[i]}" for i in ids).encode()).hexdigest()[:12]
        request = RunRequest(
            run_key=f"intraday-{day}-{look.cursor.newest_ms}-{digest}",
            run_config=run_config(ids, day, now.isoformat() if clock else None),
            tags={"trueup/trigger": "intraday_sensor", "trueup/business_date": day,
                  "trueup/correlation_id": str(uuid.uuid4()), "trueup/deals": str(len(ids))})
        context.log.info(f"{len(ids)} deal(s) closed won since {since}: {', '.join(ids[:20])}")
        return SensorResult(run_requests=[request], cursor=look.cursor.to_json())

    return intraday_closed_won_sensor
