"""ops.sync_runs: one row per asset run and partition, written whatever the outcome."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa

from trueup.connectors.clock import utc_now
from trueup.connectors.errors import classify
from trueup.connectors.warehouse import Warehouse
from trueup.connectors.warehouse_schema import RUN_FACTS, ensure


def ensure_ops_tables(wh: Warehouse) -> None:
    """ops.sync_runs and ops.export_loads (connectors/warehouse_schema), once per process."""
    ensure(wh, RUN_FACTS)


@dataclass
class RunFacts:
    run_id: str
    asset: str
    partition: str
    attempt: int = 1
    correlation_id: str | None = None
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0
    pages: int = 0
    retries: int = 0
    rows_echo: int = 0      # the platform's own CRM writes seen again: not business changes
    window_start: dt.datetime | None = None
    window_end: dt.datetime | None = None
    started_at: dt.datetime = field(default_factory=utc_now)


def write_sync_runs(wh: Warehouse, facts_list: list[RunFacts], error: BaseException | None = None) -> None:
    """One ops.sync_runs row per (asset, partition); `error` marks them all failed, classified."""
    if not facts_list:
        return
    status = "failure" if error is not None else "success"
    error_class = classify(error) if error is not None else None
    message = str(error)[:1000] if error is not None else None
    finished = utc_now()
    ensure_ops_tables(wh)
    with wh.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO ops.sync_runs (run_id, asset, partition, attempt, started_at, finished_at, status, "
            "rows_read, rows_written, rows_quarantined, error_class, error_message, window_start, window_end, "
            "pages, retries, correlation_id, business_date, rows_echo) VALUES (:run_id, :asset, :partition, :attempt, "
            ":started_at, :finished_at, :status, :rows_read, :rows_written, :rows_quarantined, :error_class, "
            ":error_message, :window_start, :window_end, :pages, :retries, :correlation_id, :partition, :echo)"),
            [{"run_id": f.run_id, "asset": f.asset, "partition": f.partition, "attempt": f.attempt,
              "started_at": f.started_at, "finished_at": finished, "status": status, "rows_read": f.rows_read,
              "rows_written": f.rows_written, "rows_quarantined": f.rows_quarantined, "error_class": error_class,
              "error_message": message, "window_start": f.window_start, "window_end": f.window_end,
              "pages": f.pages, "retries": f.retries, "correlation_id": f.correlation_id, "echo": f.rows_echo}
             for f in facts_list])
