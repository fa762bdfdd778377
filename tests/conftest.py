"""Shared pytest setup. Fixture modules live beside this file and are listed here."""
import functools
import os
from pathlib import Path

import pytest

# Nothing in tests may phone home or write outside the repo / TRUEUP_HOME.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")

pytest_plugins = [
    "tests.fixtures_cli",
    "tests.fixtures_crm",
    "tests.fixtures_pg",
]


# The tests that spend their time waiting, not computing: servers starting, a schedule's minute,
# the CRM's rate limit (~370 s of wall time between them, ~50 s of CPU; the topology test alone
# waits ~170 s of its ~180 s). `make test` runs one xdist worker more than the machine has cores
# and sends these to one worker as a single unit, where their waits overlap the other workers'
# CPU-bound tests instead of leaving a core idle.
WAITING_TESTS = (
    "tests/e2e/test_production_topology.py::",
    "tests/e2e/test_celery_executor.py::",
    "tests/e2e/test_prod_local.py::",
    "tests/e2e/test_ui_e2e.py::",
    "tests/integration/test_crm_shared_budget.py::test_without_a_shared_budget_four_processes_overrun_the_crm",
    "tests/integration/test_crm_shared_budget.py::test_four_processes_share_one_budget_no_429_and_the_limits_rate",
)


@pytest.hookimpl(optionalhook=True)   # the hook exists only where xdist is loaded
def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` with units of our own: WAITING_TESTS as one unit; each module that defines
    a module-scoped fixture as one unit, so that its fixture (a lived world, a prepared CRM) is
    built once, not once per worker its tests happen to land on; every other test a unit of its
    own. Units go out largest first (xdist's loadscope order: the module units and the waiting
    unit start early), then the single tests in collection order (e2e, integration, unit: short
    unit tests fill the end). xdist's own loadgroup reads `xdist_group` marks through a
    node id suffix that pytest 9.2 no longer keeps (pytest-dev/pytest-xdist#1386), so the units
    are named here by node id."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TestUnits(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return TestUnits(config, log)


def work_unit(nodeid: str) -> str:
    """The unit of work a test goes out in (see pytest_xdist_make_scheduler)."""
    if nodeid.startswith(WAITING_TESTS):
        return "waiting"
    module = nodeid.split("::", 1)[0]
    return module if _has_module_fixture(module) else nodeid


@functools.cache
def _has_module_fixture(module: str) -> bool:
    path = Path(__file__).resolve().parents[1] / module
    return path.is_file() and 'scope="module"' in path.read_text()
