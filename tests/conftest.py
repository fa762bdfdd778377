"""Shared pytest setup. Fixture modules live beside this file and are listed here."""
import os

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


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadgroup` with WAITING_TESTS as the one group and every other test a unit of its own
    (handed out one by one, in collection order). xdist's own loadgroup reads `xdist_group` marks
    through a node id suffix that pytest 9.2 no longer keeps (pytest-dev/pytest-xdist#1386), so the
    group is named here by node id."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WaitingTestsTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return "waiting" if nodeid.startswith(WAITING_TESTS) else nodeid

    return WaitingTestsTogether(config, log)
