"""Dagster's SQLite storage for the embedded deployment, with the event log's connections kept.

Dagster's `SqliteEventLogStorage` builds a SQLAlchemy engine and opens a new SQLite connection for
every event it stores and every read (`NullPool`), and the close of the last connection to a WAL
database checkpoints it. A small night writes ~430 events (`python -m bench night`); 23 no-op steps
took 1.9 s with it and take 0.6 s with the connections kept (median of 8 each, one process).

`KeptConnectionSqliteEventLogStorage` changes only that: one engine holding one open connection
per shard (the index and the most recently used run shards), used under Dagster's own lock as
Dagster's connections are. Schema, WAL journal, shards, reads and writes stay Dagster's. It also
remembers the tables and index columns it found: Dagster looks them up again for every asset and
asset check event it stores, the tables through a new connection each time (a backfill test's
2,293 events took 9.7 s to store before, 5.7 s after, both under cProfile).
`dagster_local.yaml` names `TrueupSqliteStorage` (Dagster's SQLite storage with this event log);
PostgreSQL storage (dagster_production.yaml) is untouched.

Its commits do not wait for a disk flush (`PRAGMA synchronous=NORMAL`, SQLite's recommended setting
with a write-ahead log): an event committed survives the process crashing, and a power loss can
lose the last events, never the log's consistency.

Two things the kept connections would otherwise change, handled here:
* Dagster's watcher of a run (the UI's live log view) reacts to modifications of the run's shard
  file; with a connection held, commits go to the write-ahead log and the file itself changes only
  at a checkpoint. Each stored event therefore touches the shard's modification time.
* A forked child never uses its parent's connections (it opens its own), and wipe/dispose close
  them first.

The override is of one private method (`_connect`), so it applies only on a Dagster release it
was tested with (TESTED_VERSIONS) that still has what it relies on (`adapter_fits`); on another the
storage uses Dagster's own connection per event and one warning says so.
tests/unit/test_dagster_storage.py compares it with stock Dagster: run it against a new release
before adding that release here.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Iterator

import sqlalchemy as sa
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage, _event_logs_directory
from sqlalchemy.pool import StaticPool

log = logging.getLogger(__name__)

#: shards whose connection stays open in one process: the index and a few runs (a webserver reading
#: many runs keeps the most recent ones; the rest are closed, so open files stay bounded)
KEPT_SHARDS = 8
#: the Dagster releases (major, minor) the override was checked against
TESTED_VERSIONS = {(1, 13)}
#: what the override uses of Dagster's SqliteEventLogStorage
_RELIED_ON = ("_connect", "_db_lock", "_initialized_dbs", "_initdb", "conn_string_for_shard", "path_for_shard",
              "has_table", "_has_asset_key_index_cols_on_connection")


def adapter_fits(storage: SqliteEventLogStorage, version: str | None = None) -> bool:
    from dagster.version import __version__

    major, minor = (int(part) for part in (version or __version__).split(".")[:2])
    return (major, minor) in TESTED_VERSIONS and all(hasattr(storage, name) for name in _RELIED_ON)


class KeptConnectionSqliteEventLogStorage(SqliteEventLogStorage):
    """Dagster's SQLite event log, keeping one open connection per shard (see the module doc)."""

    def __init__(self, base_dir: str, inst_data=None):
        self._engines: OrderedDict[str, sa.Engine] = OrderedDict()
        self._engines_pid = os.getpid()
        self._kept = False   # Dagster's own connections until it is known to fit (a new index is made here)
        self._tables_found: set[str] = set()
        self._asset_key_index_cols = False
        super().__init__(base_dir, inst_data)
        self._kept = adapter_fits(self)
        if not self._kept:
            log.warning("Dagster's SQLite event log is not the one orchestration/dagster_storage.py was tested "
                        "with; Dagster's own connection per event is used")

    @contextlib.contextmanager
    def _connect(self, shard: str) -> Iterator[sa.Connection]:
        if not self._kept:
            with super()._connect(shard) as conn:
                yield conn
            return
        with self._db_lock:
            engine = self._engine_for(shard)
            if shard not in self._initialized_dbs:
                self._initdb(engine)
                self._initialized_dbs.add(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def _engine_for(self, shard: str) -> sa.Engine:
        if self._engines_pid != os.getpid():   # a forked child: the parent's connections are not its own
            self._engines, self._engines_pid = OrderedDict(), os.getpid()
        engine = self._engines.pop(shard, None)
        if engine is None:
            engine = sa.create_engine(self.conn_string_for_shard(shard), poolclass=StaticPool,
                                      connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS,
                                                    # used by Dagster's threads too, one at a time (its lock)
                                                    "check_same_thread": False})
            sa.event.listen(engine, "connect", _wal_synchronous_normal)
        self._engines[shard] = engine   # the most recently used last
        while len(self._engines) > KEPT_SHARDS:
            self._engines.popitem(last=False)[1].dispose()
        return engine

    def has_table(self, table_name: str) -> bool:
        # Dagster asks for every asset event (tags) and asset check event, each time through a new
        # engine and connection; a table found stays (a wipe forgets what was found)
        if not self._kept:
            return super().has_table(table_name)
        if table_name in self._tables_found:
            return True
        found = super().has_table(table_name)
        if found:
            self._tables_found.add(table_name)
        return found

    def _has_asset_key_index_cols_on_connection(self, conn) -> bool:
        # asked with the schema's columns for every asset event; a column found stays
        if not self._kept or not self._asset_key_index_cols:
            self._asset_key_index_cols = super()._has_asset_key_index_cols_on_connection(conn)
        return self._asset_key_index_cols

    def store_event(self, event) -> None:
        super().store_event(event)
        if self._kept and event.run_id:
            # the run's watchers (the UI) wake on the shard file's modification (see the module doc)
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.path_for_shard(event.run_id))

    def close_connections(self) -> None:
        if not self._kept:
            return
        with self._db_lock:
            engines, self._engines = self._engines, OrderedDict()
            if self._engines_pid == os.getpid():
                for engine in engines.values():
                    engine.dispose()

    def wipe(self) -> None:
        self.close_connections()   # before Dagster deletes the shard files
        self._tables_found, self._asset_key_index_cols = set(), False
        super().wipe()

    def dispose(self) -> None:
        super().dispose()
        self.close_connections()


def _wal_synchronous_normal(dbapi_connection, _record) -> None:
    """Commits wait for no disk flush (SQLite's recommended setting in WAL mode): a committed event
    survives the process crashing, and a power loss can lose the last events before a checkpoint,
    never the database's consistency. With Dagster's default (FULL) every event waited for a flush
    of the write-ahead log: 23 no-op steps 0.56 → 0.46 s (median of 8, on disk)."""
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")


class TrueupSqliteStorage(DagsterSqliteStorage):
    """Dagster's SQLite storage (runs, schedules, event log in the same files and folders) with the
    event log above. Named in orchestration/dagster_local.yaml as `storage: custom`."""

    def __init__(self, base_dir: str, inst_data=None):
        super().__init__(base_dir, inst_data)
        self._event_log_storage = KeptConnectionSqliteEventLogStorage(_event_logs_directory(base_dir))

    @classmethod
    def from_config_value(cls, inst_data, config_value) -> "TrueupSqliteStorage":
        return cls.from_local(inst_data=inst_data, **config_value)
