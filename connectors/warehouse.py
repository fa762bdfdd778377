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
import os
import random
import re
import time
import uuid
from typing import Iterator

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import NullPool

from trueup.connectors.errors import TransientError

_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked")


def ident(name: str) -> str:
    """Quote-free identifier check: only lower-case snake_case names pass."""
    if not _IDENT.match(name):
        raise ValueError(f"refusing unsafe SQL identifier {name!r}")
    return name


def hold_ddl_lock(conn: Connection) -> None:
    """PostgreSQL: one process at a time makes schemas and tables in the warehouse, until this
    transaction ends. Steps running at once in processes of their own (the multiprocess and Celery
    executors) would otherwise race: `CREATE … IF NOT EXISTS` is not safe against a concurrent
    creator there (a unique violation in the catalog). DuckDB has one writing process anyway."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('trueup:warehouse-ddl'))"))


def column_names(conn: Connection, schema: str, table: str) -> list[str]:
    """schema.table's columns in order (a table's or a view's); [] when there is none. Every
    module asks here. On DuckDB from duckdb_columns(): its information_schema.columns is a view
    that builds the columns of every catalog before filtering, twice the time (~1.4 ms against
    ~0.7 ms on a test world's warehouse; `bench night`'s process asked 941 times)."""
    return _catalog_columns(conn, schema, table).get(table, [])


def schema_columns(conn: Connection, schema: str) -> dict[str, list[str]]:
    """Every table's and view's columns in `schema` (as `column_names` gives them), in one catalog
    read: for a transaction that asks about many tables of a schema (a reconciliation day asked
    ~11 times, ~0.8 ms each on DuckDB)."""
    return _catalog_columns(conn, schema)


def _catalog_columns(conn: Connection, schema: str, table: str | None = None) -> dict[str, list[str]]:
    if conn.dialect.name == "duckdb":
        sql = ("SELECT table_name, column_name FROM duckdb_columns() WHERE NOT internal AND schema_name = :s"
               + (" AND table_name = :t" if table is not None else "") + " ORDER BY table_name, column_index")
    else:
        sql = ("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = :s"
               + (" AND table_name = :t" if table is not None else "") + " ORDER BY table_name, ordinal_position")
    found: dict[str, list[str]] = {}
    for name, column in conn.execute(sa.text(sql), {"s": schema, "t": table}):
        found.setdefault(name, []).append(column)
    return found


def arrow_to_pandas(table: pa.Table) -> pd.DataFrame:
    # a column with one value per chunk (the partition day) is stored once, as a category
    for i, name in enumerate(table.column_names):
        if name == "_partition" and pa.types.is_string(table.schema.field(i).type):
            table = table.set_column(i, name, table.column(i).dictionary_encode())
    return table.to_pandas(split_blocks=True)


def release_held() -> None:
    """Close every DuckDB database this process keeps open between blocks (before something
    opens the file with another configuration: a dbt build)."""
    for wh in list(_HELD.values()):
        wh.release()


_HELD: dict[int, "Warehouse"] = {}


class Warehouse:
    def __init__(self, url: str, lock_timeout_s: float = 120.0):
        self.url = url
        self.lock_timeout_s = lock_timeout_s
        self.keep_between_blocks = False   # held_open: the run's warehouse keeps the file open across steps
        self._kept = None
        self._in_block = False
        if url.startswith("duckdb:///"):
            self.dialect = "duckdb"
            self.engine: Engine = sa.create_engine(url, poolclass=NullPool)
            settings = ["SET enable_progress_bar = false"]   # it would draw bars into run logs
            limit = os.environ.get("TRUEUP_DUCKDB_MEMORY_LIMIT")
            if limit:   # DuckDB spills to <warehouse>.tmp beyond it (default: 80 % of RAM)
                if not re.fullmatch(r"[0-9]+(\.[0-9]+)?\s*[KMGT]i?B", limit.strip(), re.IGNORECASE):
                    raise ValueError(f"TRUEUP_DUCKDB_MEMORY_LIMIT must look like 512MB or 2GB, not {limit!r}")
                settings.append(f"SET memory_limit = '{limit.strip()}'")

            def _on_connect(dbapi_conn, _record) -> None:
                for statement in settings:
                    dbapi_conn.execute(statement)

            sa.event.listen(self.engine, "connect", _on_connect)
        elif url.startswith("postgresql"):
            self.dialect = "postgresql"
            pg_url = sa.engine.make_url(url)
            if pg_url.drivername == "postgresql":
                pg_url = pg_url.set(drivername="postgresql+psycopg2")
            self.engine = sa.create_engine(pg_url, pool_pre_ping=True, pool_size=2, max_overflow=2)
        else:
            raise ValueError("warehouse URL must be duckdb:///… or postgresql://…")

    # -- transactions -------------------------------------------------------------------
    def _waiting_out_locks(self, open_it):
        """`open_it()`, retried while another process holds DuckDB's file lock, then transient."""
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                return open_it()
            except Exception as exc:  # noqa: BLE001 - inspected below
                if not any(m in str(exc) for m in LOCK_MARKERS):
                    raise
                if time.monotonic() > deadline:
                    raise TransientError(f"warehouse is locked by another process: {self.url}") from exc
                time.sleep(delay * (1 + random.random()))
                delay = min(delay * 2, 2.0)

    @contextlib.contextmanager
    def held_open(self) -> Iterator[None]:
        """For the block, keep the DuckDB database open in this process with one idle connection
        (no transaction). Each transaction then joins the open database instead of opening the
        file again — about 1.5 ms instead of 15–30 ms (catalog load; a checkpoint when the last
        connection closes); a small night makes some 150. Other processes wait for the file
        meanwhile (as during a transaction; the sensors' looks give up after 2 s and look again
        on the next tick): one step at a time holds it (assets/asset_run.recorded_run), never a
        dbt build (dbt-duckdb opens the file with a configuration of its own). PostgreSQL:
        nothing to do (its pool).

        With `keep_between_blocks` (the run's warehouse, orchestration/resources.py) a block that
        succeeds leaves the database open for the next one: a night's 19 writing steps opened and
        closed the file at ~34 ms each. `release()` (the run's end) or `release_held()` (before a
        dbt build) closes it. A block that fails closes it at once, kept or not: the next step
        starts from the file (a database DuckDB invalidated after a fatal error is not carried on)."""
        if self.dialect != "duckdb" or self._in_block:
            yield   # PostgreSQL; or a block inside a block: the outer one holds the file
            return
        keeper, self._kept = self._kept, None
        _HELD.pop(id(self), None)
        if keeper is None:
            keeper = self._waiting_out_locks(self.engine.connect)
        keep = False
        self._in_block = True
        try:
            yield
            keep = self.keep_between_blocks
        finally:
            self._in_block = False
            if keep:
                self._kept = keeper
                _HELD[id(self)] = self
            else:
                keeper.close()

    def release(self) -> None:
        """Close the database kept open between blocks, if any."""
        keeper, self._kept = self._kept, None
        _HELD.pop(id(self), None)
        if keeper is not None:
            keeper.close()

    @contextlib.contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; DuckDB file-lock conflicts are waited out, then reported as transient."""
        def enter():
            cm = self.engine.begin()   # a new one per attempt: a failed __enter__ cannot be retried
            return cm, cm.__enter__()

        cm, conn = self._waiting_out_locks(enter)
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

    def query_df_by_keys(self, sql: str, keys: list, chunk: int = 5_000) -> pd.DataFrame:
        """`sql` with `IN :keys` for a list of keys of any length, in one transaction: the keys go in
        chunks (PostgreSQL takes at most 65,535 parameters per statement) and the results are joined."""
        statement = sa.text(sql).bindparams(sa.bindparam("keys", expanding=True))
        frames = []
        with self.begin() as conn:
            for i in range(0, max(len(keys), 1), chunk):
                result = conn.execute(statement, {"keys": list(keys[i:i + chunk])})
                frames.append(pd.DataFrame([tuple(r) for r in result.fetchall()], columns=list(result.keys())))
        return pd.concat(frames, ignore_index=True)

    @staticmethod
    def read_df(conn: Connection, sql: str, params: dict | None = None) -> pd.DataFrame:
        result = conn.execute(sa.text(sql), params or {})
        # rows as plain tuples: given SQLAlchemy's Row objects, pandas probes each one for
        # namedtuple fields, and a missing attribute costs Row an exception (0.8 s per 100k rows)
        return pd.DataFrame([tuple(row) for row in result.fetchall()], columns=list(result.keys()))

    def frames(self, sql: str, params: dict | None = None, chunk_rows: int = 500_000) -> Iterator[pd.DataFrame]:
        """A query's result as DataFrames of at most `chunk_rows` rows, read on a connection of
        its own (its own snapshot), so the caller may write in another transaction meanwhile.
        Text stays pandas' Arrow-backed string dtype on DuckDB. Parameters are `:name` style."""
        for chunk in self.chunks(sql, params, chunk_rows):
            yield arrow_to_pandas(chunk) if isinstance(chunk, pa.Table) else chunk

    def chunks(self, sql: str, params: dict | None = None, chunk_rows: int = 500_000,
               tables: dict[str, pa.Table] | None = None) -> Iterator[pa.Table | pd.DataFrame]:
        """As `frames`, but DuckDB's chunks stay Arrow tables (no pandas conversion for a
        reader that only scans them); other dialects give DataFrames. On DuckDB, `tables`
        (name → Arrow table) are visible to the query by name."""
        params = params or {}
        with self.engine.connect() as conn:
            if self.dialect == "duckdb":
                raw = conn.connection.driver_connection
                for name, table in (tables or {}).items():
                    raw.register(name, table)
                # a relation streams (a DB-API result would first copy every row)
                reader = raw.sql(re.sub(r"(?<![:\w]):(\w+)", r"$\1", sql), params=params).to_arrow_reader(chunk_rows)
                pending: pa.Table | None = None
                for batch in reader:   # DuckDB sends ~122,880-row batches: re-cut them to chunk_rows
                    pending = pa.Table.from_batches([batch]) if pending is None else pa.concat_tables(
                        [pending, pa.Table.from_batches([batch])])
                    while pending.num_rows >= chunk_rows:
                        yield pending.slice(0, chunk_rows)
                        pending = pending.slice(chunk_rows)
                if pending is not None and pending.num_rows:
                    yield pending
            else:
                result = conn.execution_options(stream_results=True, max_row_buffer=chunk_rows).execute(
                    sa.text(sql), params)
                columns = list(result.keys())
                for rows in result.partitions(chunk_rows):
                    yield pd.DataFrame(rows, columns=columns)

    def frame(self, sql: str, params: dict | None = None) -> pd.DataFrame:
        """A query's whole result as one DataFrame, read like `frames` (own connection, fast path)."""
        if self.dialect != "duckdb":
            with self.engine.connect() as conn:
                return self.read_df(conn, sql, params)
        chunks = list(self.frames(sql, params, chunk_rows=1 << 40))
        return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True) if chunks else pd.DataFrame()

    def scalar(self, sql: str, params: dict | None = None):
        with self.begin() as conn:
            return conn.execute(sa.text(sql), params or {}).scalar()

    def number_sql(self, expr: str) -> str:
        """SQL reading a text column as a number, NULL where it is not one (as pandas'
        `to_numeric(errors="coerce")`): a money column's text, summed in the warehouse."""
        if self.dialect == "duckdb":
            return f"TRY_CAST({expr} AS DOUBLE)"
        return (f"CASE WHEN {expr} ~ '^\\s*[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$' "
                f"THEN CAST({expr} AS DOUBLE PRECISION) END")

    def json_text(self, column: str, key: str) -> str:
        """SQL for the text value of `key` in the JSON text held by `column` (DuckDB and PostgreSQL
        spell it differently). `key` is a plain name, never user input."""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"not a JSON key name: {key!r}")
        if self.dialect == "duckdb":
            return f"json_extract_string({column}, '$.{key}')"
        return f"(CAST({column} AS json) ->> '{key}')"

    # -- DDL helpers --------------------------------------------------------------------
    def table_columns(self, conn: Connection, schema: str, table: str) -> list[str]:
        return column_names(conn, schema, table)

    def ensure_text_table(self, conn: Connection, schema: str, table: str, columns: list[str],
                          typed: dict[str, str] | None = None) -> list[str]:
        """Create schema.table with TEXT columns (plus `typed` ones) if missing; add columns
        that are new. Returns the columns added to an existing table (schema drift)."""
        typed = typed or {}
        if self.dialect == "postgresql":   # the lock only when there is DDL to do (it lasts the transaction)
            have = self.table_columns(conn, schema, table)
            if have and all(c in have for c in columns):
                return []
            hold_ddl_lock(conn)
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
    def insert_df(self, conn: Connection, schema: str, table: str, df: pd.DataFrame | pa.Table) -> int:
        """Append the rows of a pandas frame or an Arrow table (which DuckDB loads as it is)."""
        if len(df) == 0:
            return 0
        arrow = isinstance(df, pa.Table)
        cols = [ident(c) for c in (df.column_names if arrow else df.columns)]
        target = f"{ident(schema)}.{ident(table)} ({', '.join(cols)})"
        if self.dialect == "duckdb":
            raw = conn.connection.driver_connection
            view = f"_trueup_load_{id(df)}"
            try:   # as Arrow, DuckDB loads without holding the GIL (and text stays text)
                raw.register(view, df if arrow else pa.Table.from_pandas(df, preserve_index=False))
            except (pa.ArrowInvalid, pa.ArrowTypeError):   # mixed Python types: DuckDB's own pandas scan
                raw.register(view, df)
            try:
                raw.execute(f"INSERT INTO {target} SELECT {', '.join(cols)} FROM {view}")
            finally:
                raw.unregister(view)
        else:
            # every value is quoted and NULL is the one bare \N: in PostgreSQL's CSV format a quoted
            # field is never NULL, so a text value that happens to read "\N" stays text
            null = f"__trueup_null_{uuid.uuid4().hex}__"
            df = df.to_pandas() if arrow else df
            text = df.to_csv(index=False, header=False, na_rep=null, quoting=csv.QUOTE_ALL)
            buf = io.StringIO(text.replace(f'"{null}"', "\\N"))
            cur = conn.connection.dbapi_connection.cursor()
            cur.copy_expert(f"COPY {target} FROM STDIN WITH (FORMAT csv, NULL '\\N')", buf)
        return len(df)

    def dispose(self) -> None:
        self.release()
        self.engine.dispose()
