"""The `trueup` console script as a user runs it: a subprocess with its own TRUEUP_HOME (the `env`
fixture), and what an expected failure must look like (one line on stderr, no traceback)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
TRUEUP = [str(BIN / "trueup")] if (BIN / "trueup").exists() else [sys.executable, "-m", "trueup.orchestration.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("TRUEUP_") and k != "DAGSTER_HOME"}
    e.update(TRUEUP_HOME=str(tmp_path / "home"), TRUEUP_SANDBOX_PORT=str(free_port()), DO_NOT_TRACK="1")
    return e


def trueup(env: dict[str, str], *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TRUEUP, *args], env={**env, **extra}, capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[1])


def assert_one_line_error(r: subprocess.CompletedProcess, *needles: str, code: int = 1) -> str:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {r.stderr!r}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie child of an exited parent still answers kill(0): look at its state
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
