"""dbt by hand against the configured warehouse, with the profile and vars a run gives it:

    .venv/bin/python -m trueup.orchestration.dbt_shell -- build --select fct_recon_breaks+

(no arguments: `build`). The settings come from the environment as for any command. dbt's output
goes where a run's does, the home's dbt target folder (`--target-path` or DBT_TARGET_PATH override): the project's
own `target/` holds the manifest Dagster's definitions read, which `make setup` writes."""
from __future__ import annotations

import os
import subprocess
import sys

from trueup.assets.transform.invocation import PROJECT_DIR, dbt_executable, dbt_invocation, dbt_target_dir
from trueup.orchestration.config import load_settings


def main(argv: list[str]) -> int:
    settings = load_settings()
    args = [a for a in argv if a != "--"] or ["build"]
    with dbt_invocation(settings) as invocation:
        return subprocess.call([dbt_executable(), *args, "--project-dir", str(PROJECT_DIR),
                                "--profiles-dir", str(invocation.profiles_dir)],
                               # DBT_TARGET_PATH, not --target-path: `dbt debug` and `dbt deps` refuse the option
                               env={"DBT_TARGET_PATH": str(dbt_target_dir(settings)), **os.environ,
                                    "TRUEUP_PUBLISH_FROM": settings.publish_from.isoformat()})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
