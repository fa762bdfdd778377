"""What one dbt invocation runs with: the project and a profile written for it.

Every connection value reaches dbt in a profile written for the invocation (profile.dbt_profile)
into a private folder of the Trueup home, removed when the invocation ends: nothing is put into
os.environ, and the warehouse password is on disk only while dbt runs.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
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
    the first build of a home parses the whole project (~3 s per build otherwise). The repository's
    dbt_project/target would not help: `make setup` parses with other vars and a placeholder
    profile, so dbt rejects that state every time."""
    return settings.home / "dbt" / "target"


@dataclass(frozen=True)
class DbtInvocation:
    profiles_dir: Path   # holds profiles.yml


@contextlib.contextmanager
def dbt_invocation(settings) -> Iterator[DbtInvocation]:
    """A private folder (0700) in the home's dbt folder holding profiles.yml (0600) for
    `settings.warehouse_url`; removed on exit."""
    parent = settings.home / "dbt"
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="invocation-", dir=parent))
    try:
        profile = folder / "profiles.yml"
        fd = os.open(profile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            yaml.safe_dump(dbt_profile(settings.warehouse_url), fh, sort_keys=False)
        yield DbtInvocation(profiles_dir=folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
