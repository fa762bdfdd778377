"""Dagster's run queue driven by hand over Trueup's instance config: runs submitted as the UI, the
schedule and the backfill daemon submit them, and the queue daemon's pass that decides which start
(nothing here depends on timing)."""
from __future__ import annotations

from pathlib import Path

from dagster import DagsterInstance, DagsterRunStatus

ORCH = Path(__file__).resolve().parents[1] / "orchestration"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"


class Queue:
    """Runs as the UI, the schedule and the backfill daemon submit them (QUEUED), and the queue
    daemon's pass that decides which of them start."""

    def __init__(self, instance: DagsterInstance, defs):
        from dagster._core.workspace.context import WorkspaceProcessContext
        from dagster._core.workspace.load_target import EmptyWorkspaceTarget
        from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

        self.instance, self.defs = instance, defs
        self.context = WorkspaceProcessContext(instance, EmptyWorkspaceTarget())
        self.daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)

    def submit(self, job_name: str, tags: dict, assets: set | None = None, status=DagsterRunStatus.QUEUED,
               run_config: dict | None = None) -> str:
        """The run as the code location's job plans it (its steps, so its pools), queued."""
        from dagster._core.remote_origin import (
            InProcessCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin)
        from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

        job = (self.defs.resolve_implicit_global_asset_job_def() if job_name == "__ASSET_JOB"
               else self.defs.resolve_job_def(job_name))
        location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="trueup.orchestration.definitions"),
                                               location_name="trueup")
        origin = RemoteJobOrigin(RemoteRepositoryOrigin(location, "__repository__"), job.name)
        run = self.instance.create_run_for_job(job, status=status, tags=tags, asset_selection=assets,
                                               remote_job_origin=origin, run_config=run_config)
        return run.run_id

    def pass_(self) -> None:
        list(self.daemon.run_iteration(self.context))

    def status(self, run_id: str) -> DagsterRunStatus:
        return self.instance.get_run_by_id(run_id).status

    def started(self, run_id: str) -> bool:
        return self.status(run_id) not in (DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED)

    def finish(self, run_id: str) -> None:
        self.instance.report_run_failed(self.instance.get_run_by_id(run_id))

    def close(self) -> None:
        self.daemon.__exit__(None, None, None)
        self.context.__exit__(None, None, None)


def backfill_tags(start: str, end: str) -> dict:
    """A single-run backfill launched from the UI: range tags only."""
    return {RANGE_START: start, RANGE_END: end, "dagster/backfill": "abcdefgh"}
