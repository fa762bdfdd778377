"""`trueup migrate`: a warehouse of the per-day raw layout moves to the version log with no row
lost, the current state unchanged, and running it again changes nothing. DuckDB and PostgreSQL."""
from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from trueup.assets.ingest.objects import CRM_OBJECTS
from trueup.assets.ingest.raw_store import land_partitions
from trueup.assets.migrations import applied, migrate
from trueup.connectors.warehouse import Warehouse

DEALS = CRM_OBJECTS["deals"]
OLD_LOAD = ["_run_id", "_partition", "_loaded_at", "_source"]


def _old_layout(wh: Warehouse) -> pd.DataFrame:
    """raw.crm_deals as the per-day layout left it: two versions of deal 1, one of deal 2, an
    exact copy of deal 3's version (re-landed by a look-back), a tombstone for deal 4."""
    rows = pd.DataFrame([
        ("1", "2026-09-01T10:00:00.000Z", "false", "100", "2026-09-01"),
        ("1", "2026-09-02T10:00:00.000Z", "false", "150", "2026-09-02"),
        ("2", "2026-09-01T11:00:00.000Z", "false", "200", "2026-09-01"),
        ("3", "2026-09-01T12:00:00.000Z", "false", "300", "2026-09-01"),
        ("3", "2026-09-01T12:00:00.000Z", "false", "300", "2026-09-01"),
        ("4", "2026-09-02T09:00:00.000Z", "true", "400", "2026-09-02"),
    ], columns=["id", "updated_at", "archived", "amount", "_partition"])
    df = rows.reindex(columns=list(DEALS.columns) + OLD_LOAD)
    df["_run_id"], df["_loaded_at"], df["_source"] = "old-run", "2026-09-03 00:00:00", "crm:deals"
    with wh.begin() as conn:
        wh.ensure_text_table(conn, "raw", "crm_deals", list(df.columns), typed={"_loaded_at": "TIMESTAMP"})
        wh.insert_df(conn, "raw", "crm_deals", df.assign(_loaded_at=pd.Timestamp("2026-09-03")))
        cols = ", ".join(df.columns)   # as the per-day layout's view was made: its table's columns
        conn.execute(sa.text(
            f"CREATE VIEW raw.crm_deals_current AS SELECT {cols} FROM (SELECT *, row_number() OVER (PARTITION BY id "
            "ORDER BY updated_at DESC, _partition DESC, _loaded_at DESC) AS _rn FROM raw.crm_deals) x "
            "WHERE _rn = 1 AND coalesce(archived, 'false') <> 'true'"))
    return df


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def wh(request, tmp_path):
    url = request.getfixturevalue("pg_url") if request.param == "postgresql" else f"duckdb:///{tmp_path / 'w.duckdb'}"
    w = Warehouse(url)
    yield w
    w.dispose()


def test_migrate_keeps_every_row_and_the_current_state_and_is_re_runnable(wh):
    old = _old_layout(wh)
    before = wh.query_df("SELECT id, amount FROM raw.crm_deals_current ORDER BY id")
    lines = migrate(wh)
    assert lines[0].startswith("1 raw_version_log: applied") and "raw.crm_deals: 6 row(s)" in lines[0]
    after = wh.query_df("SELECT id, amount FROM raw.crm_deals_current ORDER BY id")
    pd.testing.assert_frame_equal(after, before)
    assert after["id"].tolist() == ["1", "2", "3"] and after["amount"].tolist() == ["150", "200", "300"]
    held = wh.query_df("SELECT _version_hash FROM raw.crm_deals")
    assert len(held) == len(old) and held["_version_hash"].notna().all() and held["_version_hash"].is_unique
    # again: nothing to do, nothing changed
    assert migrate(wh)[0].startswith("1 raw_version_log: already applied")
    assert 1 in applied(wh)
    assert wh.query_df("SELECT _version_hash FROM raw.crm_deals ORDER BY 1").equals(
        held.sort_values("_version_hash").reset_index(drop=True))
    # landing the same versions again adds nothing; a new version is added
    seen = old.drop(columns=OLD_LOAD).iloc[[1, 2, 3]].assign(_partition=["2026-09-02", "2026-09-01", "2026-09-01"])
    res = land_partitions(wh, DEALS, {}, "rerun", lambda _p: "crm:deals", earlier=seen)
    assert sum(r.rows_written for r in res.values()) == 0
    newer = seen.iloc[[1]].assign(updated_at="2026-09-04T10:00:00.000Z", amount="250", _partition="2026-09-04")
    res = land_partitions(wh, DEALS, {}, "next", lambda _p: "crm:deals", earlier=newer)
    assert sum(r.rows_written for r in res.values()) == 1
    assert wh.scalar("SELECT count(*) FROM raw.crm_deals") == len(old) + 1
    assert wh.scalar("SELECT amount FROM raw.crm_deals_current WHERE id = '2'") == "250"


def test_landing_into_an_old_table_migrates_it_first(wh):
    old = _old_layout(wh)
    res = land_partitions(wh, DEALS, {}, "rerun", lambda _p: "crm:deals",
                          earlier=old.drop(columns=OLD_LOAD).iloc[[0, 1]].assign(_partition=["2026-09-01", "2026-09-02"]))
    assert sum(r.rows_written for r in res.values()) == 0
    assert wh.scalar("SELECT count(*) FROM raw.crm_deals WHERE _version_hash IS NULL") == 0
    assert wh.scalar("SELECT count(*) FROM raw.crm_deals") == len(old)


def test_old_gate_results_get_their_batch_kind(wh):
    """A gate_results table from before batch_kind: publish's read-back of its ERP rows (evaluated
    after that run's publish step started) is told apart from the day's batch of the same run."""
    with wh.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS quality"))
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS ops"))
        conn.execute(sa.text(
            "CREATE TABLE quality.gate_results (run_id TEXT, contract TEXT, contract_version TEXT, object TEXT, "
            "partition TEXT, direction TEXT, rows_in BIGINT, rows_passed BIGINT, rows_quarantined BIGINT, "
            "blocked BOOLEAN, evaluated_at TIMESTAMP)"))
        conn.execute(sa.text("CREATE TABLE ops.sync_runs (run_id TEXT, asset TEXT, started_at TIMESTAMP)"))
        conn.execute(sa.text("INSERT INTO ops.sync_runs VALUES ('r1', 'publish/erp_orders', '2026-09-02 01:00:00')"))
        rows = [("r1", "erp_sales_orders.inbound", "erp_sales_orders", "inbound", 10, "2026-09-02 00:30:00"),   # day
                ("r1", "erp_sales_orders.inbound", "erp_sales_orders", "inbound", 4, "2026-09-02 01:05:00"),    # read-back
                ("r1", "erp_customers.inbound", "erp_customers", "inbound", 2, "2026-09-02 01:06:00"),          # read-back
                ("r1", "crm_deals.inbound", "crm_deals", "inbound", 30, "2026-09-02 01:07:00"),                 # day
                ("r1", "erp_sales_orders.outbound", "erp_sales_orders", "outbound", 5, "2026-09-02 01:08:00")]
        for run, contract, obj, direction, n, at in rows:
            conn.execute(sa.text(
                "INSERT INTO quality.gate_results (run_id, contract, object, partition, direction, rows_in, "
                "evaluated_at) VALUES (:r, :c, :o, '2026-09-01', :d, :n, :at)"),
                {"r": run, "c": contract, "o": obj, "d": direction, "n": n, "at": at})
    line = [x for x in migrate(wh) if x.startswith("3 ")][0]
    assert "2 read-back row(s) labelled, 3 other row(s) labelled" in line, line
    got = wh.query_df("SELECT rows_in, batch_kind FROM quality.gate_results ORDER BY evaluated_at")
    assert got["batch_kind"].tolist() == ["day", "read_back", "read_back", "day", "outbound"]
    assert [x for x in migrate(wh) if x.startswith("3 ")][0].startswith("3 gate_batch_kind: already applied")
