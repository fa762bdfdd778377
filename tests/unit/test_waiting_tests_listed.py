"""tests/conftest.py's WAITING_TESTS name tests by node id: a renamed or moved test would
silently leave the group and wait on a CPU worker again."""
from pathlib import Path

from tests.conftest import WAITING_TESTS

REPO = Path(__file__).resolve().parents[2]


def test_every_waiting_test_named_exists():
    for prefix in WAITING_TESTS:
        path, _, name = prefix.partition("::")
        source = (REPO / path).read_text()
        assert not name or f"def {name}(" in source, f"{prefix}: no such test"
