"""The one wrapper every step uses for its bookkeeping (assets/asset_run.py): one ops.sync_runs row per
(asset, partition) whatever happens; a permanent error is a Failure Dagster does not retry, a
transient one is raised again for the retry policy; a partition rejected on its own is recorded
failed while the others succeed."""
from types import SimpleNamespace

import pytest
from dagster import Failure

from trueup.assets.asset_run import recorded_run, step_facts
from trueup.assets.run_facts import ensure_ops_tables
from trueup.connectors.errors import SyncError
from trueup.connectors.warehouse import Warehouse


@pytest.fixture
def wh(tmp_path):
    w = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    yield w
    w.dispose()


def _context(retry_number=0):
    return SimpleNamespace(run=SimpleNamespace(run_id="run-1", tags={"trueup/correlation_id": "c-1"}),
                           retry_number=retry_number)


def _rows(wh):
    return wh.query_df("SELECT asset, partition, attempt, status, rows_written, error_class, error_message, "
                       "correlation_id FROM ops.sync_runs ORDER BY partition").to_dict("records")


def test_success_records_what_the_body_filled_in(wh):
    facts = [step_facts(_context(), "raw/crm_deals", p) for p in ("2026-10-01", "2026-10-02")]
    with recorded_run(wh, facts):
        facts[1].rows_written = 7
    rows = _rows(wh)
    assert [(r["partition"], r["status"], r["rows_written"]) for r in rows] == [
        ("2026-10-01", "success", 0), ("2026-10-02", "success", 7)]
    assert {r["correlation_id"] for r in rows} == {"c-1"} and {r["attempt"] for r in rows} == {1}


def test_a_permanent_error_is_recorded_and_becomes_a_failure_that_is_not_retried(wh):
    with pytest.raises(Failure) as failed:
        with recorded_run(wh, [step_facts(_context(), "publish/erp_orders", "2026-10-01")]):
            raise SyncError("ERP refused the order: customer C-9 does not exist")
    assert failed.value.allow_retries is False
    assert "customer C-9 does not exist" in failed.value.description
    (row,) = _rows(wh)
    assert (row["status"], row["error_class"]) == ("failure", "permanent")
    assert row["error_message"] == "ERP refused the order: customer C-9 does not exist"


def test_a_transient_error_is_recorded_and_raised_again_for_the_retry_policy(wh):
    with pytest.raises(SyncError):
        with recorded_run(wh, [step_facts(_context(retry_number=1), "raw/crm_deals", "2026-10-01")]):
            raise SyncError("CRM answered 503", error_class="transient")
    (row,) = _rows(wh)
    assert (row["status"], row["error_class"], row["attempt"]) == ("failure", "transient", 2)


def test_a_rejected_partition_is_recorded_failed_and_the_others_succeed(wh):
    ctx = _context()
    with recorded_run(wh, []) as run:
        for day in ("2026-10-01", "2026-10-02", "2026-10-03"):
            f = step_facts(ctx, "raw/erp_exports", day)
            run.facts.append(f)
            if day == "2026-10-02":
                run.reject(f, SyncError("invoices.csv: checksum mismatch", error_class="contract"))
    rows = _rows(wh)
    assert [(r["partition"], r["status"]) for r in rows] == [
        ("2026-10-01", "success"), ("2026-10-02", "failure"), ("2026-10-03", "success")]
    assert rows[1]["error_message"] == "invoices.csv: checksum mismatch"


def test_a_dry_run_records_nothing_when_it_succeeds(wh):
    with recorded_run(wh, [step_facts(_context(), "publish/erp_orders", "2026-10-01")]) as run:
        run.record_success = False
    ensure_ops_tables(wh)
    assert _rows(wh) == []
