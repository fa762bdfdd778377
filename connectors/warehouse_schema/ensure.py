"""Creating and upgrading a group of platform tables, once per process and warehouse.

Ensuring a group makes its schemas, creates its missing tables, adds the columns an older
table lacks (at the end, in declared order), runs the tables' backfills and makes its views
again. A process remembers what it ensured, by warehouse URL and the group's version, so a
writer may ask before each read and write and the DDL still runs once per process (it used to
run before every ledger call, in every gate and reconciliation step, taking catalog locks).
"""
from __future__ import annotations

import threading

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from trueup.connectors.warehouse import Warehouse, column_names, hold_ddl_lock, ident

from .model import Group, Table

_ensured: set[tuple[str, str, str]] = set()
_lock = threading.Lock()


def _key(engine: Engine, group: Group) -> tuple[str, str, str]:
    return engine.url.render_as_string(hide_password=False), group.name, group.version


def ensure(wh: Warehouse, group: Group) -> None:
    """`group` in its current layout, in a transaction of its own; at most once per process."""
    key = _key(wh.engine, group)
    if key in _ensured:
        return
    with wh.begin() as conn:
        create(conn, group)
    with _lock:
        _ensured.add(key)


def ensure_in(conn: Connection, group: Group) -> None:
    """`group` in its current layout, inside the caller's transaction; remembered only once that
    transaction commits (rolled back, its DDL is undone too)."""
    key = _key(conn.engine, group)
    if key in _ensured:
        return
    create(conn, group)

    def remember(_conn) -> None:
        with _lock:
            _ensured.add(key)

    sa.event.listen(conn, "commit", remember, once=True)


def create(conn: Connection, group: Group) -> None:
    """The group's DDL, run now on `conn` (idempotent; one process at a time on PostgreSQL)."""
    hold_ddl_lock(conn)
    for schema in group.schemas:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}"))
    for table in group.tables:
        if column_names(conn, table.schema, table.name):
            add_missing_columns(conn, table)
        else:
            conn.execute(sa.text(table.create_sql()))
        for statement in table.backfill:
            conn.execute(sa.text(statement))
    for view in group.views:
        conn.execute(sa.text(f"DROP VIEW IF EXISTS {view.qualified}"))
        conn.execute(sa.text(view.create_sql()))


def add_missing_columns(conn: Connection, table: Table) -> list[str]:
    """Add the columns an existing `table` lacks; returns their names (none if it does not exist)."""
    have = set(column_names(conn, table.schema, table.name))
    if not have:
        return []
    missing = [c for c in table.columns if c.name not in have]
    for column in missing:
        conn.execute(sa.text(table.add_column_sql(column)))
    return [c.name for c in missing]
