"""The `trueup` console script, run as a user runs it: a subprocess with its own TRUEUP_HOME.

Commands print what they did; expected failures exit non-zero with exactly one line on
stderr and no traceback.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from tests.fixtures_cli import BIN, TRUEUP, _pid_alive, assert_one_line_error, free_port, trueup  # noqa: F401

# ------------------------------------------------------------------------------ failures
def test_down_when_not_running(env):
    r = trueup(env, "sandbox", "down")
    line = assert_one_line_error(r, "not running")
    assert line.startswith("trueup: error:")
    assert r.stdout == ""


def test_advance_before_seeding(env):
    r = trueup(env, "sandbox", "advance")
    assert_one_line_error(r, "trueup sandbox seed")


@pytest.mark.parametrize("var, value", [
    ("TRUEUP_WAREHOUSE_URL", "mysql://x"),
    ("TRUEUP_ERP_URL", "oracle://scott@db"),
    ("TRUEUP_START_DATE", "2026-02-30"),
    ("TRUEUP_PUBLISH_FROM", "yesterday"),
    ("TRUEUP_REPORTING_CURRENCY", "EURO"),
])
def test_bad_setting_names_the_variable(env, var, value):
    r = trueup(env, "sandbox", "status", **{var: value})
    assert_one_line_error(r, var)


def test_up_refuses_when_the_crm_is_a_real_one(env):
    r = trueup(env, "sandbox", "up", TRUEUP_CRM_BASE_URL="https://api.hubapi.com")
    assert_one_line_error(r, "TRUEUP_CRM_BASE_URL", "not starting a sandbox")
    assert not (Path(env["TRUEUP_HOME"]) / "sandbox" / "crm.pid").exists()


def test_bad_date_is_a_usage_error(env):
    r = trueup(env, "sandbox", "seed", "--start", "2026-13-01")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "--start" in r.stderr and "2026-13-01" in r.stderr
    assert not (Path(env["TRUEUP_HOME"]) / "sandbox" / "world.json").exists()


@pytest.mark.parametrize("args", [
    ("sandbox", "seed", "--days", "0"),
    ("sandbox", "seed", "--days", "-3"),
    ("sandbox", "seed", "--scale", "-1"),
    ("sandbox", "seed", "--scale", "0"),
    ("sandbox", "seed", "--seed", "seven"),
    ("sandbox", "advance", "--days", "0"),
    ("sandbox", "advance", "--days", "-2"),
    ("demo", "--scale", "-1"),
    ("demo", "--days", "1"),
    ("demo", "--days-per-run", "0"),
    ("sandbox", "frobnicate"),
    (),
])
def test_bad_arguments_are_usage_errors(env, args):
    r = trueup(env, *args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("trueup")  # argparse's "prog: error: ..." line


def test_unexpected_failure_is_still_one_line(env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    r = trueup(env, "sandbox", "seed", "--days", "2", TRUEUP_ERP_URL=f"sqlite:///{blocker}/erp.sqlite")
    line = assert_one_line_error(r)
    assert "TRUEUP_DEBUG=1" in line


# ------------------------------------------------------------------------------ seed / advance / status
def test_seed_advance_status(env):
    home = Path(env["TRUEUP_HOME"])
    r = trueup(env, "sandbox", "seed", "--days", "10", "--seed", "3")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    assert "Seeded 10 days (2026-09-01 .. 2026-09-10)" in out
    assert "World seed 3, scale 1.0: 2026-09-01 .. 2026-09-10 (go-live 2026-09-06)" in out
    assert "Exports: 10 of 10 days complete" in out

    # the counts printed are the world's counts
    from trueup.sandbox.crm.store import CrmStore

    store = CrmStore(home / "sandbox" / "crm.sqlite")
    try:
        crm_line = next(line for line in out.splitlines() if line.strip().startswith("CRM:"))
        for t in ("companies", "contacts", "deals"):
            assert f"{store.count(t)} {t}," in crm_line, crm_line
    finally:
        store.close()
    defects = json.loads((home / "sandbox" / "defects.json").read_text())["defects"]
    assert f"Defects injected ({len(defects)}, listed in {home / 'sandbox' / 'defects.json'})" in out
    for kind in {d["kind"] for d in defects}:
        n = sum(d["kind"] == kind for d in defects)
        assert f"{n:>5}  {kind}" in out

    r = trueup(env, "sandbox", "advance")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("2026-09-11: CRM changed "), r.stdout
    assert "clerks keyed" in lines[0] and "export holds" in lines[0]
    assert (home / "landing" / "exports" / "2026-09-11" / "manifest.json").exists()

    r = trueup(env, "sandbox", "advance", "--days", "2")
    assert r.returncode == 0, r.stderr
    assert [x[:10] for x in r.stdout.strip().splitlines()] == ["2026-09-12", "2026-09-13"]

    r = trueup(env, "sandbox", "status")
    assert r.returncode == 0, r.stderr
    assert f"sandbox CRM not running at http://127.0.0.1:{env['TRUEUP_SANDBOX_PORT']}" in r.stdout
    assert "2026-09-01 .. 2026-09-13" in r.stdout
    assert "Exports: 13 of 13 days complete" in r.stdout

    # a rejected re-seed leaves the world alone
    r = trueup(env, "sandbox", "seed", "--days", "0")
    assert r.returncode == 2
    assert json.loads((home / "sandbox" / "world.json").read_text())["through_date"] == "2026-09-13"


def test_seed_with_an_explicit_crm_token_on_a_fresh_home(env):
    """Nothing has created TRUEUP_HOME yet: seed makes the folders it needs."""
    r = trueup(env, "sandbox", "seed", "--days", "2", TRUEUP_CRM_TOKEN="sbx-test-token")
    assert r.returncode == 0, r.stderr
    assert "Seeded 2 days" in r.stdout


def test_status_before_anything(env):
    r = trueup(env, "sandbox", "status")
    assert r.returncode == 0, r.stderr
    assert "not running" in r.stdout and "no sandbox world yet: run `trueup sandbox seed`" in r.stdout


# ------------------------------------------------------------------------------ up / status / down
def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a socket listening on `port` (from /proc/net/tcp*)."""
    out = set()
    for name in ("tcp", "tcp6"):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for row in path.read_text().splitlines()[1:]:
            f = row.split()
            addr, p = f[1].rsplit(":", 1)
            if int(p, 16) == port and f[3] == "0A":  # 0A = LISTEN
                out.add(addr)
    return out


def _other_addresses() -> list[str]:
    """This host's non-loopback IPv4 addresses, if it has any."""
    found = set()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # no packet is sent: just picks the outgoing interface
            found.add(s.getsockname()[0])
    except OSError:
        pass
    try:
        found.update(socket.gethostbyname_ex(socket.gethostname())[2])
    except OSError:
        pass
    return sorted(a for a in found if not a.startswith("127.") and a != "0.0.0.0")


def test_up_status_down(env):
    home, port = Path(env["TRUEUP_HOME"]), int(env["TRUEUP_SANDBOX_PORT"])
    pid_file = home / "sandbox" / "crm.pid"
    pid = None
    try:
        r = trueup(env, "sandbox", "up", timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"sandbox CRM listening at http://127.0.0.1:{port} (pid " in r.stdout
        pid = int(pid_file.read_text())
        assert _pid_alive(pid)

        r = trueup(env, "sandbox", "up")
        assert r.returncode == 0 and "already running" in r.stdout and f"(pid {pid})" in r.stdout

        r = trueup(env, "sandbox", "status")
        assert r.returncode == 0, r.stderr
        assert f"sandbox CRM running at http://127.0.0.1:{port} (pid {pid})" in r.stdout

        # it answers on loopback, with the token from TRUEUP_HOME, and only on loopback
        token = (home / "sandbox" / "crm_token").read_text().strip()
        url = f"http://127.0.0.1:{port}/crm/v3/objects/companies"
        assert requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=5).status_code == 200
        assert requests.get(url, timeout=5).status_code == 401
        listening = _listening_addresses(port)
        if Path("/proc/net/tcp").exists():
            assert listening == {"0100007F"}, f"listening on {listening}"
        for addr in _other_addresses():
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((addr, port)) != 0, f"the sandbox CRM answers on {addr}"

        r = trueup(env, "sandbox", "down")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == f"sandbox CRM stopped (pid {pid})"
        assert not pid_file.exists()
        deadline = time.monotonic() + 5
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _pid_alive(pid)

        r = trueup(env, "sandbox", "status")
        assert "sandbox CRM not running" in r.stdout
        assert_one_line_error(trueup(env, "sandbox", "down"), "not running")
    finally:
        if pid_file.exists():
            trueup(env, "sandbox", "down", timeout=30)
        if pid is not None and _pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_up_on_a_busy_port_fails_with_one_line(env):
    port = int(env["TRUEUP_SANDBOX_PORT"])
    pid_file = Path(env["TRUEUP_HOME"]) / "sandbox" / "crm.pid"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen(1)
        try:
            r = trueup(env, "sandbox", "up", timeout=60)
            assert_one_line_error(r, str(port))
            assert not pid_file.exists()
        finally:
            if pid_file.exists():
                pid = int(pid_file.read_text())
                if _pid_alive(pid):
                    os.kill(pid, signal.SIGKILL)
