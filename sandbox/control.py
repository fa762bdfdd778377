"""Start, stop and probe the sandbox CRM server as a background process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import requests

from trueup.orchestration.commands import CliError
from trueup.orchestration.config import Settings
from trueup.sandbox.paths import SandboxPaths, client_token


class SandboxError(CliError):
    """An expected sandbox problem, with a one-line message for the operator."""


def running_pid(settings: Settings) -> int | None:
    pid_file = SandboxPaths.of(settings).pid_file
    if not pid_file.exists():
        return None
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError, PermissionError):
        pid_file.unlink(missing_ok=True)
        return None
    return pid


def is_answering(settings: Settings, timeout: float = 1.0) -> bool:
    try:
        r = requests.get(f"{settings.crm_base_url}/crm/v3/objects/companies", params={"limit": 1},
                         headers={"Authorization": f"Bearer {client_token(settings)}"}, timeout=timeout)
        return r.status_code in (200, 429)
    except requests.RequestException:
        return False


def sandbox_up(settings: Settings, wait_seconds: float = 20.0) -> str:
    """Start the sandbox CRM on 127.0.0.1 unless it already runs. Returns a sentence."""
    if not settings.uses_sandbox_crm:
        raise SandboxError(f"TRUEUP_CRM_BASE_URL points at {settings.crm_base_url}: not starting a sandbox")
    pid = running_pid(settings)
    if pid and is_answering(settings):
        return f"sandbox CRM already running at {settings.crm_base_url} (pid {pid})"
    paths = SandboxPaths.of(settings)
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.sandbox_token()  # make sure the token file exists before the server reads it
    log = open(paths.log_file, "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "trueup.sandbox.crm.server", "--db", str(paths.crm_db),
         "--token-file", str(paths.token_file), "--host", "127.0.0.1", "--port", str(settings.sandbox_port)],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    paths.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + wait_seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            paths.pid_file.unlink(missing_ok=True)
            tail = paths.log_file.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
            raise SandboxError(f"sandbox CRM exited at start (port {settings.sandbox_port} busy?): {tail[0]}")
        if is_answering(settings):
            return f"sandbox CRM listening at {settings.crm_base_url} (pid {proc.pid})"
        time.sleep(0.1)
    raise SandboxError(f"sandbox CRM did not answer within {wait_seconds:.0f}s; see {paths.log_file}")


def sandbox_down(settings: Settings) -> str:
    pid = running_pid(settings)
    if pid is None:
        raise SandboxError("sandbox CRM is not running")
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    SandboxPaths.of(settings).pid_file.unlink(missing_ok=True)
    return f"sandbox CRM stopped (pid {pid})"
