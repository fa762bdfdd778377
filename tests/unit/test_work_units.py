"""How `make test` hands tests to xdist workers (tests/conftest.py): the waiting tests together,
a module with a module-scoped fixture as one unit, every other test on its own."""
from pathlib import Path

from tests.conftest import WAITING_TESTS, work_unit

REPO = Path(__file__).resolve().parents[2]


def test_every_waiting_test_named_exists():
    """WAITING_TESTS name tests by node id: a renamed or moved test would silently leave the group
    and wait on a CPU worker again."""
    for prefix in WAITING_TESTS:
        path, _, name = prefix.partition("::")
        source = (REPO / path).read_text()
        assert not name or f"def {name}(" in source, f"{prefix}: no such test"


def test_units():
    topology = "tests/e2e/test_production_topology.py::test_nightly_runs_through_webserver_daemon_and_schedule_on_postgres"
    assert work_unit(topology) == "waiting"
    # test_reconcile's lived worlds are module-scoped: its tests go out together
    assert work_unit("tests/integration/test_reconcile.py::test_breaks_are_exactly_the_injected_defects[11]") \
        == work_unit("tests/integration/test_reconcile.py::test_breaks_age_and_resolve_when_the_source_is_fixed[11]") \
        == "tests/integration/test_reconcile.py"
    single = "tests/integration/test_write_safety.py::test_a_failed_run_is_one_line_with_its_run_id_and_log"
    assert work_unit(single) == single
