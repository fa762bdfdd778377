"""The analysts' read-only copy of a DuckDB warehouse, published at the end of every run that
rebuilds the marts (the nightly job, the 06:00 reconcile job).

DuckDB lets one process hold a database file for writing and locks every other process out
meanwhile, so an analyst querying the live file would block a run or be blocked by it. The
asset copies what analysts query — the marts (`marts`, `reference`), the findings (`recon`),
the quarantine (`quality`) and the run facts (`ops`); views as tables — into a new file beside
the warehouse, then renames it over `$TRUEUP_HOME/analyst/warehouse.duckdb` in one step. An
analyst who opened the previous copy keeps reading it (its file stays open after the rename);
the next `duckdb -readonly` sees the new one. Neither waits for the other. The file is private
to the user (0600), as the warehouse is.

With a PostgreSQL warehouse nothing is copied: analysts connect with the read-only role
(`trueup analyst-role`), and PostgreSQL's MVCC keeps their queries and the runs apart.
"""

import os
import time
from pathlib import Path

import sqlalchemy as sa
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, asset

from trueup.connectors.warehouse import Warehouse, ident

#: the schemas an analyst queries (README: Three analyst questions)
SCHEMAS = ("marts", "reference", "recon", "quality", "ops")
KEY = AssetKey(["analyst", "warehouse_snapshot"])
#: what the copy waits for: the marts the runs rebuild last
UPSTREAM = (AssetKey(["marts", "roi_summary"]), AssetKey(["marts", "fct_recon_breaks"]),
            AssetKey(["marts", "dim_customer"]))


def snapshot_path(home: Path) -> Path:
    return home / "analyst" / "warehouse.duckdb"


def publish_snapshot(wh: Warehouse, target: Path) -> dict[str, int]:
    """Copy SCHEMAS of the DuckDB warehouse into a new file and rename it over `target`.
    Returns the rows copied per table (schema.table)."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    copied: dict[str, int] = {}
    try:
        with wh.begin() as conn:
            tables = conn.execute(sa.text(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = "
                "current_database() AND table_schema IN :s ORDER BY 1, 2").bindparams(
                sa.bindparam("s", expanding=True)), {"s": list(SCHEMAS)}).all()
            conn.execute(sa.text(f"ATTACH '{_quoted(tmp)}' AS analyst_copy"))
            try:
                for schema in sorted({s for s, _ in tables}):
                    conn.execute(sa.text(f"CREATE SCHEMA analyst_copy.{ident(schema)}"))
                for schema, table in tables:
                    name = f"{ident(schema)}.{ident(table)}"
                    conn.execute(sa.text(f"CREATE TABLE analyst_copy.{name} AS SELECT * FROM {name}"))
                    copied[f"{schema}.{table}"] = conn.execute(
                        sa.text(f"SELECT count(*) FROM analyst_copy.{name}")).scalar_one()
            finally:
                conn.execute(sa.text("DETACH analyst_copy"))
        os.chmod(tmp, 0o600)
        os.replace(tmp, target)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + ".wal")):
            leftover.unlink(missing_ok=True)
    return copied


def _quoted(path: Path) -> str:
    # a path of our own making (TRUEUP_HOME, pid, counter), quoted for the SQL literal ATTACH takes
    return str(path).replace("'", "''")


@asset(key=KEY, deps=list(UPSTREAM), group_name="analyst", kinds={"duckdb"},
       required_resource_keys={"warehouse", "settings"},
       description="The analysts' read-only copy of a DuckDB warehouse ($TRUEUP_HOME/analyst/warehouse.duckdb: "
                   "marts, recon, quality, ops), replaced in one rename after the marts are rebuilt, so no "
                   "analyst query blocks or waits for a run. PostgreSQL: nothing to copy (the read-only role).")
def warehouse_snapshot(context: AssetExecutionContext) -> MaterializeResult:
    wh: Warehouse = context.resources.warehouse.get()
    if wh.dialect != "duckdb":
        return MaterializeResult(metadata={"copied": "nothing: analysts read PostgreSQL with the read-only role "
                                                     "(`trueup analyst-role`)"})
    target = snapshot_path(context.resources.settings.get().home)
    copied = publish_snapshot(wh, target)
    context.log.info(f"analyst copy: {len(copied)} tables, {sum(copied.values())} rows → {target}")
    return MaterializeResult(metadata={"path": str(target), "tables": len(copied), "rows": sum(copied.values())})
