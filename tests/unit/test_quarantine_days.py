"""The quarantine keeps one entry per record (the work to do, at the latest day it failed on);
every day a record failed on is kept beside it in quality.quarantine_days, which the ROI marts
count quarantined records per period from. A record bad on a baseline day and again on a current
day is a quarantined record of both periods."""
from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from trueup.assets.migrations import migrate
from trueup.connectors.warehouse import Warehouse
from trueup.quality.contracts import contract_for
from trueup.quality.store import ensure_quality_tables, upsert_quarantine

DEALS = contract_for("crm_deals")


def _failing(rows: list[tuple[str, str, str]]) -> pd.DataFrame:
    """(deal id, updated_at, business day) rows that failed `currency_iso`."""
    return pd.DataFrame({"id": [r[0] for r in rows], "updated_at": [r[1] for r in rows],
                         "deal_currency_code": "XXX", "_partition": [r[2] for r in rows],
                         "failed_expectations": [["currency_iso"]] * len(rows)})


def _days(wh: Warehouse) -> list[tuple[str, str]]:
    df = wh.query_df("SELECT business_key, partition FROM quality.quarantine_days ORDER BY 1, 2")
    return list(zip(df["business_key"], df["partition"]))


def test_each_day_a_record_failed_on_is_kept_once_a_ranges_earlier_days_included(tmp_path):
    wh = Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    now = pd.Timestamp("2026-09-20 02:00:00")
    with wh.begin() as conn:
        ensure_quality_tables(wh, conn)
        # a backfill's range: deal 9 failed on the 9th and, edited and still bad, on the 14th
        upsert_quarantine(wh, conn, DEALS, _failing([("9", "2026-09-09T10:00:00Z", "2026-09-09"),
                                                     ("9", "2026-09-14T10:00:00Z", "2026-09-14"),
                                                     ("7", "2026-09-10T10:00:00Z", "2026-09-10")]), "r1", now)
    with wh.begin() as conn:   # the same range again (a re-run), then a later night where deal 9 fails again
        upsert_quarantine(wh, conn, DEALS, _failing([("9", "2026-09-09T10:00:00Z", "2026-09-09"),
                                                     ("9", "2026-09-14T10:00:00Z", "2026-09-14"),
                                                     ("7", "2026-09-10T10:00:00Z", "2026-09-10")]), "r2", now)
        upsert_quarantine(wh, conn, DEALS, _failing([("9", "2026-09-16T10:00:00Z", "2026-09-16")]), "r3", now)
    # the work queue: one entry per record, at its latest day
    entries = wh.query_df("SELECT business_key, partition FROM quality.quarantine ORDER BY 1")
    assert list(zip(entries["business_key"], entries["partition"])) == [("7", "2026-09-10"), ("9", "2026-09-16")]
    # every day each failed on, once
    assert _days(wh) == [("7", "2026-09-10"), ("9", "2026-09-09"), ("9", "2026-09-14"), ("9", "2026-09-16")]
    first = wh.query_df("SELECT run_id FROM quality.quarantine_days WHERE partition = '2026-09-09'")
    assert first["run_id"].tolist() == ["r1"]   # the run that first found it that day
    wh.dispose()


def test_the_migration_starts_the_days_from_the_quarantines_entries_once(tmp_path):
    """A warehouse from before quarantine_days: each entry's (latest) day is all that is known."""
    wh = Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}")
    with wh.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA quality"))
        conn.execute(sa.text(
            "CREATE TABLE quality.quarantine (quarantine_id TEXT PRIMARY KEY, contract TEXT, contract_version TEXT, "
            "object TEXT, business_key TEXT, partition TEXT, run_id TEXT, failed_expectations TEXT, payload TEXT, "
            "record_version TEXT, first_seen_at TIMESTAMP, last_seen_at TIMESTAMP, attempts INTEGER, status TEXT, "
            "resolved_at TIMESTAMP, resolution TEXT)"))
        conn.execute(sa.text(
            "INSERT INTO quality.quarantine (quarantine_id, contract, object, business_key, partition, run_id, "
            "first_seen_at, status) VALUES ('q9', 'crm_deals.inbound', 'crm_deals', '9', '2026-09-14', 'r1', "
            "'2026-09-15 02:00:00', 'open'), ('q7', 'crm_deals.inbound', 'crm_deals', '7', '2026-09-10', 'r1', "
            "'2026-09-11 02:00:00', 'released')"))
    line = [x for x in migrate(wh) if x.startswith("4 ")][0]
    assert "2 day(s) taken from the quarantine's entries" in line, line
    assert _days(wh) == [("7", "2026-09-10"), ("9", "2026-09-14")]
    assert [x for x in migrate(wh) if x.startswith("4 ")][0].startswith("4 quarantine_days: already applied")
    assert _days(wh) == [("7", "2026-09-10"), ("9", "2026-09-14")]
    wh.dispose()
