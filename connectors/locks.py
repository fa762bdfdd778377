"""Named exclusive locks that say who holds them — knows nothing of Dagster.

* With a PostgreSQL warehouse the lock is a session-level advisory lock on the warehouse
  database, so it holds across machines; its holder is told by the holding connection's
  `application_name` (read from pg_locks / pg_stat_activity), and it is released when the
  holder's connection ends — a killed process frees it at once.
* With a DuckDB warehouse (one local file, so one machine) it is an flock on a file under
  `$TRUEUP_HOME/locks/` (0600, folder 0700) whose content names the holder; the kernel
  releases it when the process ends.

`try_lock` never waits: it returns a held :class:`Lock` or raises :class:`LockBusy` naming
the holder. `lock` waits (for writers that must queue rather than give up).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa


class LockBusy(RuntimeError):
    """Somebody else holds the lock; `holder` says who (run, since when) when known."""

    def __init__(self, name: str, holder: dict):
        self.name, self.holder = name, holder
        who = holder.get("owner") or "another process"
        since = holder.get("since")
        super().__init__(f"{name} is held by {who}" + (f" since {since}" if since else ""))


def _key(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"trueup:{name}".encode()).digest()[:8], "big", signed=True)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class Lock:
    def __init__(self, name: str, release) -> None:
        self.name, self._release = name, release

    def release(self) -> None:
        if self._release is not None:
            self._release()
            self._release = None

    def __enter__(self) -> "Lock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


def _holder(fd: int) -> dict:
    """Who holds the lock, as its holder wrote in the file. The holder writes it just after taking
    the lock, so a process refused in between finds the file empty (five nightly runs started at
    once saw it): it reads again for up to a second before saying "another process"."""
    for _ in range(20):
        try:
            text = os.pread(fd, 4096, 0).decode()
        except OSError:
            return {}
        try:
            if text:
                return json.loads(text)
        except ValueError:      # caught mid-write
            pass
        time.sleep(0.05)
    return {}


def _file_lock(home: Path, name: str, owner: str, wait: bool) -> Lock:
    path = _private_dir(Path(home) / "locks") / (hashlib.sha256(name.encode()).hexdigest()[:16] + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise LockBusy(name, holder) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps({"lock": name, "owner": owner, "since": _now(), "pid": os.getpid(),
                              "host": socket.gethostname()}).encode(), 0)

    def release() -> None:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    return Lock(name, release)


def _pg_lock(engine: sa.Engine, name: str, owner: str, wait: bool) -> Lock:
    conn = engine.connect()
    try:
        # who holds it is readable by the others: "<owner> since <time>", cut to PostgreSQL's 63 bytes
        conn.execute(sa.text("SELECT set_config('application_name', :a, false)"),
                     {"a": f"trueup {owner} since {_now()}"[:63]})
        if wait:
            conn.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": _key(name)})
            got = True
        else:
            got = bool(conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(name)}).scalar())
        conn.commit()
        if not got:
            row = conn.execute(sa.text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND "
                "((l.classid::bigint << 32) | l.objid::bigint) = (:k)::bigint"), {"k": _key(name)}).first()
            conn.close()
            text = (row[0] if row else "") or ""
            owner_, _, since = text.removeprefix("trueup ").partition(" since ")
            raise LockBusy(name, {"owner": owner_ or None, "since": since or None})
    except LockBusy:
        raise
    except BaseException:
        conn.close()
        raise

    def release() -> None:
        try:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": _key(name)})
            conn.commit()
        finally:
            conn.close()
    return Lock(name, release)


def try_lock(name: str, *, home: Path, owner: str, pg_engine: sa.Engine | None = None) -> Lock:
    """Take `name` now or raise LockBusy (PostgreSQL advisory lock if `pg_engine`, else a file lock)."""
    if pg_engine is not None:
        return _pg_lock(pg_engine, name, owner, wait=False)
    return _file_lock(home, name, owner, wait=False)


@contextlib.contextmanager
def lock(name: str, *, home: Path, owner: str, pg_engine: sa.Engine | None = None) -> Iterator[Lock]:
    """Hold `name` for the block, waiting for it if needed."""
    held = _pg_lock(pg_engine, name, owner, wait=True) if pg_engine is not None else \
        _file_lock(home, name, owner, wait=True)
    try:
        yield held
    finally:
        held.release()
