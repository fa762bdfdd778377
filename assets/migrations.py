"""Versioned migrations of the warehouse, recorded in ops.schema_migrations.

`migrate(wh)` applies the pending ones in order, each in its own transaction, and is safe to run
again: an applied migration is skipped, and each migration is itself re-runnable (a run cut
short leaves nothing half done). `trueup migrate` runs it; landing into an old raw table also
migrates that table first, so a warehouse that was never migrated by hand still stays right.

The platform tables' current layout is connectors/warehouse_schema: a column a table lacks is
added whenever its writer ensures it. A migration is for what that cannot do alone — re-shape a
layer's tables (the raw version log), label rows written before a column existed — or for a
reader that must see the new layout before any writer of the new release has run.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

import sqlalchemy as sa

from trueup.connectors.warehouse import Warehouse
from trueup.connectors.warehouse_schema import MIGRATION_LOG, SOR_WRITES, add_missing_columns, ensure


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Warehouse, object], str]   # (warehouse, connection) -> what it did, in words


def _raw_version_log(wh: Warehouse, conn) -> str:
    """raw.<obj> from per-day snapshots (a re-run replaced a day) to a log of observed versions:
    every row kept, each given its `_version_hash`; the current views rebuilt."""
    from trueup.assets.ingest.objects import ALL_OBJECTS
    from trueup.assets.ingest.raw_store import migrate_raw_table

    done = []
    for name, obj in ALL_OBJECTS.items():
        if wh.table_columns(conn, "raw", obj.raw_table):
            rows = migrate_raw_table(wh, conn, obj)
            done.append(f"raw.{name}: {rows} row(s) given a version hash")
    return "; ".join(done) or "no raw tables yet"


def _ledger_columns(wh: Warehouse, conn) -> str:
    """ops.sor_writes gains the columns added since its first release (linked_order_number,
    business_at, …): the ROI marts read them before any publish run of the new version."""
    if not wh.table_columns(conn, "ops", "sor_writes"):
        return "no ledger yet"
    added = add_missing_columns(conn, SOR_WRITES)
    return f"ops.sor_writes: added {', '.join(added)}" if added else "ops.sor_writes: up to date"


def _gate_batch_kind(wh: Warehouse, conn) -> str:
    """quality.gate_results gains batch_kind. Rows written before it are labelled from what is on
    record: an ERP customers/orders evaluation made after the same run's publish step started is
    publish's read-back of its own writes; outbound rows are the writes' check; the rest were the
    day's batches (a quarantine replay of that time cannot be told apart and stays `day`)."""
    from trueup.quality.store import ensure_quality_tables

    if not wh.table_columns(conn, "quality", "gate_results"):
        return "no gate results yet"
    ensure_quality_tables(wh, conn)
    read_back = 0
    if wh.table_columns(conn, "ops", "sync_runs"):
        read_back = conn.execute(sa.text(
            "UPDATE quality.gate_results AS g SET batch_kind = 'read_back' WHERE g.batch_kind IS NULL "
            "AND g.direction = 'inbound' AND g.object IN ('erp_customers', 'erp_sales_orders') AND EXISTS ("
            "SELECT 1 FROM ops.sync_runs s WHERE s.run_id = g.run_id AND s.asset = 'publish/erp_orders' "
            "AND s.started_at <= g.evaluated_at)")).rowcount
    rest = conn.execute(sa.text(
        "UPDATE quality.gate_results SET batch_kind = CASE WHEN direction = 'outbound' THEN 'outbound' "
        "ELSE 'day' END WHERE batch_kind IS NULL")).rowcount
    return f"quality.gate_results: {read_back} read-back row(s) labelled, {rest} other row(s) labelled"


def _quarantine_days(wh: Warehouse, conn) -> str:
    """quality.quarantine_days starts from what the quarantine remembers: each entry's latest day
    (the days an entry failed on before that were not kept before this release)."""
    from trueup.quality.store import ensure_quality_tables

    if not wh.table_columns(conn, "quality", "quarantine"):
        return "no quarantine yet"
    ensure_quality_tables(wh, conn)
    added = conn.execute(sa.text(
        "INSERT INTO quality.quarantine_days (quarantine_id, contract, object, business_key, partition, run_id, "
        "first_seen_at) SELECT q.quarantine_id, q.contract, q.object, q.business_key, q.partition, q.run_id, "
        "q.first_seen_at FROM quality.quarantine q WHERE NOT EXISTS (SELECT 1 FROM quality.quarantine_days d "
        "WHERE d.quarantine_id = q.quarantine_id AND d.partition = q.partition)")).rowcount
    return f"quality.quarantine_days: {added} day(s) taken from the quarantine's entries"


MIGRATIONS = (
    Migration(1, "raw_version_log", _raw_version_log),
    Migration(2, "ledger_columns", _ledger_columns),
    Migration(3, "gate_batch_kind", _gate_batch_kind),
    Migration(4, "quarantine_days", _quarantine_days),
)


def applied(wh: Warehouse) -> dict[int, dict]:
    ensure(wh, MIGRATION_LOG)
    with wh.begin() as conn:
        rows = conn.execute(sa.text("SELECT version, name, applied_at, detail FROM ops.schema_migrations"))
        return {int(r[0]): {"name": r[1], "applied_at": r[2], "detail": r[3]} for r in rows}


def migrate(wh: Warehouse) -> list[str]:
    """Apply the pending migrations; one line per migration, applied now or before."""
    done = applied(wh)
    lines = []
    for m in MIGRATIONS:
        if m.version in done:
            lines.append(f"{m.version} {m.name}: already applied {done[m.version]['applied_at']:%Y-%m-%d %H:%M}")
            continue
        with wh.begin() as conn:
            detail = m.apply(wh, conn)
            conn.execute(sa.text("INSERT INTO ops.schema_migrations (version, name, applied_at, detail) "
                                 "VALUES (:v, :n, :at, :d)"),
                         {"v": m.version, "n": m.name, "d": detail,
                          "at": dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)})
        lines.append(f"{m.version} {m.name}: applied ({detail})")
    return lines
