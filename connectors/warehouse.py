"""The warehouse (DuckDB by default, PostgreSQL in production) behind one small interface.

SQL goes through SQLAlchemy with bound parameters; identifiers come only from the fixed
allow-lists in `warehouse_tables` — never from data. Bulk loads use each engine's fast
path (DuckDB: register the DataFrame and INSERT … SELECT; PostgreSQL: COPY).

DuckDB allows one writing process per file and locks others out entirely, so every
transaction opens its own short-lived connection and lock conflicts are retried as
transient errors.
"""
from __future__ import annotations

import contextlib
import csv
import io
import random
import re
import time
import uuid
from typing import Iterator

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from connectors.errors import TransientError

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")


def ident(name: str) -> str:
    """Quote-free identifier check: only lower-case snake_case names pass."""
    if not _IDENT.match(name):
        raise ValueError(f"refusing unsafe SQL identifier {name!r}")
    return name


class Warehouse:
    def __init__(self, url: str, lock_timeout_s: float = 120.0):
        self.url = url
        self.lock_timeout_s = lock_timeout_s
        if url.startswith("duckdb:///"):
            self.dialect = "duckdb"
            self.engine: Engine = sa.create_engine(url, poolclass=NullPool)
        elif url.startswith("postgresql"):
            self.dialect = "postgresql"
            pg_url = sa.engine.make_url(url)
            if pg_url.drivername == "postgresql":
                pg_url = pg_url.set(drivername="postgresql+psycopg2")
            self.engine = sa.create_engine(pg_url, pool_pre_ping=True, pool_size=2, max_overflow=2)
        else:
            raise ValueError("warehouse URL must be duckdb:///… or postgresql://…")

    # -- transactions -------------------------------------------------------------------
    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; DuckDB file-lock conflicts are waited out, then reported as transient."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                cm = self.engine.begin()
                conn = cm.__enter__()
            except Exception as exc:  # noqa: BLE001 - inspected below
                if not any(m in str(exc) for m in LOCK_MARKERS):
                    raise
                if time.monotonic() > deadline:
                    raise TransientError(f"warehouse is locked by another process: {self.url}") from exc
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)
                continue
            break
        try:
            yield conn
        except BaseException:
            cm.__exit__(*__import__("sys").exc_info())
            raise
        else:
            cm.__exit__(None, None, None)

    def query_df(self, sql: str, params: dict | None = None) -> pd.DataFrame:
        with self.begin() as conn:
            return self.read_df(conn, sql, params)

    @staticmethod
    def read_df(conn: Connection, sql: str, params: dict | None = None) -> pd.DataFrame:
        result = conn.execute(sa.text(sql), params or {})
        return pd.DataFrame(result.fetchall(), columns=list(result.keys()))

    def scalar(self, sql: str, params: dict | None = None):
        with self.begin() as conn:
            return conn.execute(sa.text(sql), params or {}).scalar()

    # -- DDL helpers --------------------------------------------------------------------
    def table_columns(self, conn: Connection, schema: str, table: str) -> list[str]:
        rows = conn.execute(sa.text(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = :s AND table_name = :t ORDER BY ordinal_position"), {"s": schema, "t": table})
        return [r[0] for r in rows]

    def ensure_text_table(self, conn: Connection, schema: str, table: str, columns: list[str],
                          typed: dict[str, str] | None = None) -> list[str]:
        """Create schema.table with TEXT columns (plus `typed` ones) if missing; add columns
        that are new. Returns the columns added to an existing table (schema drift)."""
        typed = typed or {}
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}"))
        existing = self.table_columns(conn, schema, table)
        if not existing:
            cols = ", ".join(f"{ident(c)} {typed.get(c, 'TEXT')}" for c in columns)
            conn.execute(sa.text(f"CREATE TABLE IF NOT EXISTS {ident(schema)}.{ident(table)} ({cols})"))
            return []
        added = [c for c in columns if c not in existing]
        for c in added:
            conn.execute(sa.text(
                f"ALTER TABLE {ident(schema)}.{ident(table)} ADD COLUMN {ident(c)} {typed.get(c, 'TEXT')}"))
        return added

    # -- bulk load ----------------------------------------------------------------------
    def insert_df(self, conn: Connection, schema: str, table: str, df: pd.DataFrame) -> int:
        if df.empty:
            return 0
        cols = [ident(c) for c in df.columns]
        target = f"{ident(schema)}.{ident(table)} ({', '.join(cols)})"
        if self.dialect == "duckdb":
            raw = conn.connection.driver_connection
            view = f"_trueup_load_{id(df)}"
            raw.register(view, df)
            try:
                raw.execute(f"INSERT INTO {target} SELECT {', '.join(cols)} FROM {view}")
            finally:
                raw.unregister(view)
        else:
            # every value is quoted and NULL is the one bare \N: in PostgreSQL's CSV format a quoted
            # field is never NULL, so a text value that happens to read "\N" stays text
            null = f"__trueup_null_{uuid.uuid4().hex}__"
            text = df.to_csv(index=False, header=False, na_rep=null, quoting=csv.QUOTE_ALL)
            buf = io.StringIO(text.replace(f'"{null}"', "\\N"))
            cur = conn.connection.dbapi_connection.cursor()
            cur.copy_expert(f"COPY {target} FROM STDIN WITH (FORMAT csv, NULL '\\N')", buf)
        return len(df)

    def dispose(self) -> None:
        self.engine.dispose()
