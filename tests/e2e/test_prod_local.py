"""`make prod-local` (trueup.sandbox.prod_local): the production topology comes up on this machine
for a person — PostgreSQL, the seeded world, the code server, the webserver on 127.0.0.1 and the
daemon — and everything it started is gone when it stops. `--check` stops it once the UI serves
the asset graph."""
from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from tests.fixtures_cli import free_port

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_prod_local_comes_up_serves_the_ui_and_leaves_nothing_running(tmp_path):
    port = free_port()
    r = subprocess.run([sys.executable, "-m", "trueup.sandbox.prod_local", "--home", str(tmp_path / "prod"),
                        "--port", str(port), "--days", "3", "--check"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    assert f"UI            http://127.0.0.1:{port}" in r.stdout and "check: ok" in r.stdout
    pg_port = int(r.stdout.split("PostgreSQL    127.0.0.1:")[1].split()[0])
    assert not _listening(port) and not _listening(pg_port)   # the webserver and PostgreSQL stopped
    assert (tmp_path / "prod").stat().st_mode & 0o077 == 0     # the home is private to the user
