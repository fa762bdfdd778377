"""Steps running at once in processes of their own (the multiprocess and Celery executors) make the
warehouse's schemas and tables at the same moment. On PostgreSQL `CREATE … IF NOT EXISTS` is not
safe against a concurrent creator (a unique violation in the catalog: the first distributed
backfill failed so); the warehouse's DDL is taken one session at a time (`hold_ddl_lock`)."""
from __future__ import annotations

import threading

import pytest

from trueup.connectors.warehouse import Warehouse
from trueup.connectors.warehouse_schema import QUALITY, RECON, ensure

pytestmark = pytest.mark.postgres
SESSIONS = 6


def _at_once(fn) -> list[BaseException]:
    barrier, errors = threading.Barrier(SESSIONS), []

    def run(i):
        try:
            barrier.wait()
            fn(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(SESSIONS)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    return errors


def test_sessions_making_the_same_tables_at_once_all_succeed(pg_url):
    houses = [Warehouse(pg_url) for _ in range(SESSIONS)]   # one process each, as far as the server sees
    try:
        def text_table(i):
            with houses[i].begin() as conn:
                houses[i].ensure_text_table(conn, "validated", "crm_deals", ["id", "amount", f"extra_{i % 2}"])

        assert _at_once(text_table) == []

        def groups(i):
            ensure(houses[i], QUALITY if i % 2 else RECON)

        assert _at_once(groups) == []
        cols = houses[0].query_df("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                  "'validated' AND table_name = 'crm_deals'")["column_name"]
        assert {"id", "amount", "extra_0", "extra_1"} == set(cols)
    finally:
        for wh in houses:
            wh.dispose()
