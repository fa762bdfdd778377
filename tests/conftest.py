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
