"""The `replay_quarantine` Dagster job (also run by `trueup replay`)."""
from dagster import Config, OpExecutionContext, job, op


class ReplayConfig(Config):
    actor: str = "dagster-ui"


@op(required_resource_keys={"warehouse", "crm", "erp", "settings"})
def replay_quarantine_op(context: OpExecutionContext, config: ReplayConfig) -> str:
    """Re-validate every open quarantined row against its current source value."""
    from trueup.assets.gate.replay import replay_quarantine
    from trueup.quality.gx_suites import GxValidator

    settings = context.resources.settings.get()
    summary = replay_quarantine(
        context.resources.warehouse.get(), run_id=context.run.run_id, tz=settings.timezone,
        reports_dir=settings.reports_dir, crm=context.resources.crm.client(), erp_engine=context.resources.erp.engine(),
        actor=config.actor, validator=GxValidator())
    context.log.info(f"replay: {summary.line()}")
    context.add_output_metadata({"released": summary.released, "still_open": summary.still_open,
                                 "deleted_at_source": summary.deleted_at_source})
    return summary.line()


@job(description="Re-read open quarantined rows from their sources, re-validate, release those that pass.")
def replay_quarantine():
    replay_quarantine_op()
