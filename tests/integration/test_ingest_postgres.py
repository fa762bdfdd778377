"""The nightly equality test with the production variants: the warehouse in PostgreSQL
(bulk loads by COPY), and the ERP database in PostgreSQL as well."""
from __future__ import annotations

import pytest

from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from tests.ingest_checks import nightly_runs_make_warehouse_equal_to_sources
from tests.world_fixtures import world_in_env

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_erp_world(tmp_path, monkeypatch, pg_cluster, pg_url):
    erp_db = pg_cluster.create_database()
    with world_in_env(monkeypatch, tmp_path / "home", warehouse_url=pg_url, erp_url=erp_db) as w:
        yield w
    try:
        pg_cluster.drop_database(erp_db.rsplit("/", 1)[1])
    except Exception:  # the cluster is thrown away anyway
        pass


def _assert_warehouse_is_postgres():
    wh = Warehouse(load_settings().warehouse_url)
    assert wh.dialect == "postgresql"
    # the raw tables really live in PostgreSQL, with the landed rows
    assert wh.scalar("SELECT count(*) FROM raw.crm_deals") > 0
    assert wh.scalar("SELECT count(*) FROM raw.erp_invoices") > 0
    wh.dispose()


def test_nightly_runs_with_erp_and_warehouse_in_postgres(pg_erp_world):
    """Both PostgreSQL sides at once: the PostgreSQL warehouse with a SQLite ERP is the same
    warehouse code, and the SQLite ERP is covered by the DuckDB variant (tests/integration/test_ingest.py)."""
    assert load_settings().warehouse_is_postgres
    assert load_settings().erp_url.startswith("postgresql")
    nightly_runs_make_warehouse_equal_to_sources(pg_erp_world)
    _assert_warehouse_is_postgres()


TRICKY = ["", None, "\\N", "a,b", 'say "hi"', "two\nlines", "tab\there", "back\\slash", "ünïcødé ✓", " padded ",
          "\r\n", "NULL", "null"]


@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_bulk_load_round_trips_text_exactly(backend, tmp_path, request):
    """insert_df (DuckDB register / PostgreSQL COPY) keeps every text value as it was, NULL as NULL."""
    import datetime as dt

    import pandas as pd

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"duckdb:///{tmp_path / 'wh.duckdb'}"
    wh = Warehouse(url)
    df = pd.DataFrame({"k": [str(i) for i in range(len(TRICKY))], "v": TRICKY,
                       "_loaded_at": dt.datetime(2026, 9, 1, 12, 30, 15, 123456)})
    with wh.begin() as conn:
        wh.ensure_text_table(conn, "raw", "tricky", ["k", "v", "_loaded_at"], typed={"_loaded_at": "TIMESTAMP"})
        assert wh.insert_df(conn, "raw", "tricky", df) == len(df)
    back = wh.query_df("SELECT k, v, _loaded_at FROM raw.tricky")
    wh.dispose()
    got = {r.k: (None if pd.isna(r.v) else r.v) for r in back.itertuples()}
    assert got == {str(i): v for i, v in enumerate(TRICKY)}
    assert set(pd.to_datetime(back["_loaded_at"])) == {pd.Timestamp("2026-09-01 12:30:15.123456")}
