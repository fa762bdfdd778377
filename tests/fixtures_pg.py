"""pytest fixtures for the throwaway PostgreSQL cluster (see sandbox/postgres.py).

- ``pg_cluster`` (session): one cluster for the whole run, stopped by PID at the end.
- ``pg_url`` (function): a new, empty database per test, as a SQLAlchemy URL.

If no PostgreSQL server binaries exist the fixtures fail with one clear message
(they never skip: CI has PostgreSQL).
"""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from trueup.sandbox.postgres import PgCluster, PgUnavailable, find_pg_bindir


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    try:
        bindir = find_pg_bindir()
    except PgUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        cluster = PgCluster.start(bindir)
    except PgUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    url = pg_cluster.create_database()
    yield url
    try:
        pg_cluster.drop_database(url.rsplit("/", 1)[1])
    except Exception:  # the cluster is thrown away anyway
        pass
