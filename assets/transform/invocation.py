"""What one dbt invocation runs with: the project, the dbt command, a profile written for it.

Every connection value reaches dbt in a profile written for the invocation (profile.dbt_profile)
into a private folder of the Trueup home, removed when the invocation ends: nothing is put into
os.environ, and the warehouse password is on disk only while dbt runs.

The folder holds the dbt command too. dagster-dbt asks `dbt --version` before each build, and
dbt answers it by importing all of itself (~3.5 s a run on 2 cores) and asking PyPI for its
latest release (a slow DNS answer stalls the run for minutes). The folder's `dbt` is a two-line
script that answers that question with the version of the dbt-core installed next to this Python
(the dbt it runs) and hands every other command to that dbt.
"""
from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Iterator

import yaml

from .profile import dbt_profile

PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"


def dbt_executable() -> str:
    """The dbt installed next to this Python (the venv's), not whatever is on PATH."""
    return str(Path(sys.executable).with_name("dbt"))


def dbt_target_dir(settings) -> Path:
    """dbt's target folder for one Trueup home, kept from run to run. dbt reuses its parse of the
    project (target/partial_parse.msgpack) while the --vars and the profile stay the same, so only
    the first build of a home parses the whole project (~3 s per build otherwise). dagster-dbt's
    default, a new folder per build seeded from dbt_project/target, never helps: `make setup`
    parses with other vars and a placeholder profile, so dbt rejects that state every time."""
    return settings.home / "dbt" / "target"


@dataclass(frozen=True)
class DbtInvocation:
    profiles_dir: Path   # holds profiles.yml
    executable: Path     # the dbt command (see the module's docstring)


def dbt_command_script(dbt: str, dbt_version: str) -> str:
    """The folder's `dbt`: answers `--version` as dbt does (first line of its answer), runs `dbt`."""
    return ("#!/bin/sh\n"
            "# dbt for one Trueup invocation (assets/transform/invocation.py): the version is known\n"
            'if [ "$#" -eq 1 ] && [ "$1" = "--version" ]; then\n'
            f"    printf 'Core:\\n  - installed: %s\\n' {shlex.quote(dbt_version)}; exit 0\n"
            "fi\n"
            f'exec {shlex.quote(dbt)} "$@"\n')


@contextlib.contextmanager
def dbt_invocation(settings) -> Iterator[DbtInvocation]:
    """A private folder (0700) in the home's dbt folder holding profiles.yml (0600) for
    `settings.warehouse_url` and the dbt command; removed on exit."""
    parent = settings.home / "dbt"
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="invocation-", dir=parent))
    try:
        profile = folder / "profiles.yml"
        fd = os.open(profile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(dbt_profile(settings.warehouse_url), fh, sort_keys=False)
        command = folder / "dbt"
        fd = os.open(command, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o700)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dbt_command_script(dbt_executable(), installed_version("dbt-core")))
        yield DbtInvocation(profiles_dir=folder, executable=command)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
