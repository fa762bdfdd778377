"""A throwaway PostgreSQL cluster (the tests, the benchmarks), built from the machine's server binaries.

``PgCluster.start()`` runs ``initdb`` into a temporary directory and starts ``postgres``
on a free 127.0.0.1 port (unix sockets inside the temporary directory, trust auth,
durability switched off for speed). PostgreSQL refuses to run as root, so when the
tests run as root the server runs as an unprivileged system user (``trueup_pg``,
created with ``useradd --system`` if missing) that owns the temporary directory.
``stop()`` signals the postmaster by PID and removes the directory.
"""
from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

PG_USER = "trueup_pg"  # OS account the server runs as when we are root
DB_SUPERUSER = "postgres"  # database role created by initdb


class PgUnavailable(RuntimeError):
    """No usable PostgreSQL server binaries on this machine."""


def find_pg_bindir() -> Path:
    """Directory holding ``initdb`` and ``postgres``.

    Order: $TRUEUP_PG_BINDIR, /usr/lib/postgresql/<highest>/bin, /usr/local/pgsql/bin,
    then PATH (including /usr/local/bin symlinks).
    """
    candidates: list[Path] = []
    if os.environ.get("TRUEUP_PG_BINDIR"):
        candidates.append(Path(os.environ["TRUEUP_PG_BINDIR"]))

    def version_key(p: str):
        v = Path(p).parent.name
        return tuple(int(x) if x.isdigit() else 0 for x in v.split("."))

    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True)]
    candidates.append(Path("/usr/local/pgsql/bin"))
    which = shutil.which("initdb", path=os.environ.get("PATH", "") + os.pathsep + "/usr/local/bin")
    if which:
        candidates.append(Path(os.path.realpath(which)).parent)
    for d in candidates:
        if (d / "initdb").is_file() and (d / "postgres").is_file():
            return d
    raise PgUnavailable(
        "PostgreSQL server binaries not found (need initdb and postgres; looked in "
        + ", ".join(str(c) for c in candidates)
        + "). Install the PostgreSQL server package or set TRUEUP_PG_BINDIR."
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ensure_os_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    res = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True,
        text=True,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PgUnavailable(
            f"running as root and could not create the unprivileged user {name!r} for PostgreSQL: "
            f"{(res.stderr or res.stdout).strip()}"
        ) from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class PgCluster:
    bindir: Path
    base: Path
    port: int = 0
    host: str = "127.0.0.1"
    user: str = DB_SUPERUSER
    pid: int | None = None
    startup_seconds: float = 0.0
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _run_as: pwd.struct_passwd | None = field(default=None, repr=False)

    # -- lifecycle -----------------------------------------------------------------
    @classmethod
    def start(cls, bindir: Path | None = None, base_dir: str | None = None) -> "PgCluster":
        t0 = time.monotonic()
        bindir = bindir or find_pg_bindir()
        base = Path(tempfile.mkdtemp(prefix="trueup-pg-", dir=base_dir))
        cluster = cls(bindir=bindir, base=base)
        try:
            if os.geteuid() == 0:
                cluster._run_as = _ensure_os_user(PG_USER)
                os.chown(base, cluster._run_as.pw_uid, cluster._run_as.pw_gid)
            cluster._initdb()
            last_error: Exception | None = None
            for _ in range(3):  # the free port may be taken between probe and bind
                cluster.port = _free_port()
                try:
                    cluster._start_server()
                    break
                except RuntimeError as exc:
                    last_error = exc
            else:
                raise last_error  # type: ignore[misc]
        except BaseException:
            cluster.stop()
            raise
        atexit.register(cluster.stop)
        cluster.startup_seconds = time.monotonic() - t0
        return cluster

    def _subprocess_kwargs(self) -> dict:
        env = {
            "PATH": f"{self.bindir}:/usr/bin:/bin",
            "LC_ALL": "C",
            "LANG": "C",
            "TZ": "UTC",
            "HOME": str(self.base),
        }
        kw: dict = {"env": env, "cwd": str(self.base)}
        if self._run_as is not None:
            kw.update(user=self._run_as.pw_uid, group=self._run_as.pw_gid, extra_groups=[])
        return kw

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "postgres.log"

    def _initdb(self) -> None:
        cmd = [
            str(self.bindir / "initdb"),
            "-D", str(self.datadir),
            "-U", DB_SUPERUSER,
            "-A", "trust",
            "-E", "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        res = subprocess.run(cmd, capture_output=True, text=True, **self._subprocess_kwargs())
        if res.returncode != 0:
            raise RuntimeError(f"initdb failed ({res.returncode}): {res.stderr.strip() or res.stdout.strip()}")

    def _start_server(self) -> None:
        opts = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.base),
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "64MB",
            "timezone": "UTC",
            "log_timezone": "UTC",
            "logging_collector": "off",
        }
        cmd = [str(self.bindir / "postgres"), "-D", str(self.datadir)]
        for k, v in opts.items():
            cmd += ["-c", f"{k}={v}"]
        log = open(self.logfile, "ab")
        try:
            self._proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, **self._subprocess_kwargs(),
            )
        finally:
            log.close()
        self.pid = self._proc.pid
        deadline = time.monotonic() + 30
        import psycopg2

        while True:
            if self._proc.poll() is not None:
                rc = self._proc.returncode
                tail = self.logfile.read_text(errors="replace")[-2000:]
                self._proc = None
                self.pid = None
                raise RuntimeError(f"postgres exited with status {rc} during start-up:\n{tail}")
            try:
                conn = psycopg2.connect(host=self.host, port=self.port, user=self.user, dbname="postgres", connect_timeout=2)
                conn.close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    tail = self.logfile.read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"postgres not ready after 30 s:\n{tail}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT), SIGKILL after 10 s; remove the directory."""
        pid = self.pid
        if pid is not None:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self._proc is not None:
                    if self._proc.poll() is not None:
                        break
                elif not _pid_alive(pid):
                    break
                time.sleep(0.02)
            else:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                if self._proc is not None:
                    self._proc.wait(5)
            self.pid = None
            self._proc = None
        if self.base.exists():
            shutil.rmtree(self.base, ignore_errors=True)

    # -- databases -----------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql+psycopg2://{self.user}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def _admin(self, sql: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(sql)
        finally:
            conn.close()

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (random name unless given); return its URL."""
        name = name or f"t_{uuid.uuid4().hex[:12]}"
        if not name.replace("_", "").isalnum():
            raise ValueError(f"unsafe database name: {name!r}")
        self._admin(f'CREATE DATABASE "{name}" TEMPLATE template1 STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, terminating any connections still open to it."""
        self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
