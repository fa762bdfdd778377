"""The nightly gate streams raw through the contract in chunks: it must decide exactly what the
in-memory gate decides, whatever the chunk size, and leave the warehouse consistent — or, when
a proof fails, leave nothing at all."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa

import trueup.assets.gate.run_gate as run_gate
import trueup.quality.gx_worker as gx_worker_module
from trueup.assets.gate.run_gate import gate_partitions
from trueup.connectors.warehouse import Warehouse
from trueup.quality.contracts import contract_for
from trueup.quality.gate import ConservationError, evaluate_partitions
from trueup.quality.gx_worker import GateDisagreement, GxWorkerError
from trueup.quality.gx_suites import GxValidator
from trueup.quality.store import ensure_quality_tables
from tests.contract_samples import GOOD

CONTRACT = contract_for("erp_invoices")
DAY1, DAY2 = "2026-10-01", "2026-10-02"


@pytest.fixture(scope="module")
def validator():
    return GxValidator()


def _invoice(n: int, day: str, **changes) -> dict:
    row = dict(GOOD["erp_invoices"], invoice_number=f"INV-{n}", order_number="SO-1001", customer_number="C1001",
               amount=f"{n}.25", updated_at=f"{day}T09:00:00.000000Z")
    row.update(changes)
    return {**row, "_partition": day, "_loaded_at": f"{day}T23:00:00.000000Z"}


def _rows() -> pd.DataFrame:
    """Two days; every kind of row the stream must handle, spread over several chunks."""
    rows = [_invoice(n, DAY1) for n in range(1, 12)]
    rows += [
        _invoice(20, DAY1, amount="12,50"),                              # wrong type
        _invoice(21, DAY1, currency="XXX"),                              # unknown currency
        _invoice(22, DAY1, order_number="SO-404"),                       # orphan
        _invoice(23, DAY1, invoice_number=None),                         # no key …
        _invoice(24, DAY1, invoice_number=None, amount="3.00"),          # … twice: both kept, both quarantined
        _invoice(5, DAY1, amount="5.25"),                                # the same version of INV-5 twice
        _invoice(30, DAY1, amount="-1.00"),                              # an old bad version of INV-30 …
        _invoice(30, DAY1, updated_at=f"{DAY1}T10:00:00.000000Z"),       # … replaced later that day
        _invoice(40, DAY1, currency="XXX"),                              # fails on day 1, fixed on day 2
        _invoice(41, DAY1),                                              # passes on day 1, fails on day 2
    ]
    rows += [_invoice(n, DAY2) for n in range(50, 60)]
    rows += [_invoice(40, DAY2, updated_at=f"{DAY2}T09:00:00.000000Z"),
             _invoice(41, DAY2, currency="XXX", updated_at=f"{DAY2}T09:00:00.000000Z")]
    return pd.DataFrame(rows)


def _warehouse(tmp_path, rows: pd.DataFrame) -> Warehouse:
    wh = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    with wh.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA raw"))
        cols = ", ".join(f"{c} TEXT" for c in rows.columns)
        conn.execute(sa.text(f"CREATE TABLE raw.erp_invoices ({cols})"))
        conn.execute(sa.text("CREATE VIEW raw.erp_invoices_current AS SELECT * FROM raw.erp_invoices"))
        conn.execute(sa.text("CREATE TABLE raw.erp_sales_orders_current AS SELECT 'SO-1001' AS order_number"))
        conn.execute(sa.text("CREATE TABLE raw.erp_customers_current AS SELECT 'C1001' AS customer_number"))
        wh.insert_df(conn, "raw", "erp_invoices", rows.astype(object).where(rows.notna(), None))
    return wh


def _expected(rows: pd.DataFrame, validator):
    """What the in-memory gate decides for the same rows, after keeping each record's latest
    version per day (and every copy of that version)."""
    latest = rows.groupby(["_partition", "invoice_number"], dropna=False)["updated_at"].transform("max")
    current = rows[rows["invoice_number"].isna() | (rows["updated_at"] == latest)]
    refs = {"erp_order_numbers": ["SO-1001"], "erp_customer_numbers": ["C1001"]}
    return evaluate_partitions(CONTRACT, current, refs, validator)


@pytest.mark.parametrize("chunk_rows,gx_worker,spill", [(3, "process", True), (7, "process", False),
                                                        (10_000, "process", True), (3, "thread", True),
                                                        (10_000, "thread", False)])
def test_streamed_gate_decides_what_the_in_memory_gate_decides(tmp_path, validator, chunk_rows, gx_worker, spill,
                                                               monkeypatch):
    monkeypatch.setattr(gx_worker_module, "UNIQUE_BUCKET_ROWS", 4)  # uniqueness validated in hash buckets too
    monkeypatch.setattr(gx_worker_module, "ROW_PIECE_ROWS", 5)      # GX gets row rules in pieces of chunks
    monkeypatch.setattr(gx_worker_module, "WHOLE_SLICE_ROWS", 6)    # and references in several slices
    monkeypatch.setenv("TRUEUP_GX_WORKER", gx_worker)
    rows = _rows()
    wh = _warehouse(tmp_path, rows)
    scratch = tmp_path / "scratch" if spill else None   # the uniqueness keys wait on disk
    got = gate_partitions(wh, CONTRACT, [DAY1, DAY2], "run-1", tmp_path / "reports", validator,
                          chunk_rows=chunk_rows, scratch_dir=scratch)
    if spill:
        assert scratch.is_dir() and not any(scratch.iterdir())   # used, and cleaned up
    expected = _expected(rows, validator)
    for day in (DAY1, DAY2):
        o, e = got[day][0], expected[day]
        assert (o.rows_in, o.rows_passed, o.rows_quarantined) == (e.rows_in, e.rows_passed, e.rows_quarantined)
        assert o.unexpected_counts == e.unexpected_counts
        assert o.money_in == pytest.approx(o.money_passed + o.money_quarantined)
        validated = wh.query_df("SELECT invoice_number, amount FROM validated.erp_invoices WHERE _partition = :p",
                                {"p": day})
        assert sorted(validated["invoice_number"]) == sorted(e.passed["invoice_number"])

    day1 = got[DAY1][0]
    assert day1.unexpected_counts["invoice_number_unique"] == 2       # both copies of INV-5
    assert day1.unexpected_counts["invoice_number_present"] == 2      # both keyless rows, none dropped
    assert day1.unexpected_counts["amount_plausible"] == 0            # INV-30's old version is not judged
    q = wh.query_df("SELECT business_key, partition, status, failed_expectations FROM quality.quarantine")
    entries = {k: (p, s) for k, p, s in zip(q["business_key"], q["partition"], q["status"])}
    assert entries["INV-5"] == (DAY1, "open") and "INV-30" not in entries
    assert sum(k.startswith("missing-key:") for k in entries) == 2
    # a failure is released by a pass on the same day or later, never by an earlier pass
    assert entries["INV-40"] == (DAY1, "released")
    assert entries["INV-41"] == (DAY2, "open")
    assert json.loads(q.loc[q["business_key"] == "INV-20", "failed_expectations"].iloc[0]) == ["amount_is_decimal"]


def test_rerunning_the_gate_replaces_its_partitions(tmp_path, validator):
    rows = _rows()
    wh = _warehouse(tmp_path, rows)
    for run in ("run-1", "run-2"):
        gate_partitions(wh, CONTRACT, [DAY1, DAY2], run, tmp_path / "reports", validator, chunk_rows=5)
    v = wh.query_df("SELECT _run_id, count(*) AS n FROM validated.erp_invoices GROUP BY 1")
    assert list(v["_run_id"]) == ["run-2"]
    assert int(wh.scalar("SELECT count(*) FROM quality.quarantine")) == len(
        wh.query_df("SELECT DISTINCT business_key FROM quality.quarantine"))


def test_a_conservation_failure_at_the_target_fails_loudly_and_leaves_nothing(tmp_path, validator, monkeypatch):
    rows = _rows()
    wh = _warehouse(tmp_path, rows)
    ensure_quality_tables(wh)
    real_insert = run_gate._insert_passed

    def lose_one_row(conn, *args, **kwargs):
        real_insert(conn, *args, **kwargs)
        conn.execute(sa.text("DELETE FROM validated.erp_invoices WHERE invoice_number = 'INV-7'"))

    monkeypatch.setattr(run_gate, "_insert_passed", lose_one_row)
    with pytest.raises(ConservationError, match="validated holds"):
        gate_partitions(wh, CONTRACT, [DAY1, DAY2], "run-1", tmp_path / "reports", validator, chunk_rows=4)
    assert int(wh.scalar("SELECT count(*) FROM quality.quarantine")) == 0
    assert int(wh.scalar("SELECT count(*) FROM quality.gate_results")) == 0
    with wh.begin() as conn:
        assert wh.table_columns(conn, "validated", "erp_invoices") == []   # not even the table


def test_warehouse_frames_come_in_chunks_of_the_asked_size(tmp_path):
    wh = Warehouse(f"duckdb:///{tmp_path / 'f.duckdb'}")
    with wh.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t AS SELECT i::VARCHAR AS k FROM range(300000) r(i)"))
    sizes = [len(f) for f in wh.frames("SELECT k FROM t WHERE k <> :x", {"x": "-"}, chunk_rows=100_000)]
    assert sizes == [100_000, 100_000, 100_000]
    assert len(wh.frame("SELECT k FROM t")) == 300_000
    assert list(wh.frames("SELECT k FROM t WHERE k = :x", {"x": "-"})) == []


def test_duckdb_memory_cap_is_a_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("TRUEUP_DUCKDB_MEMORY_LIMIT", "256MB")
    wh = Warehouse(f"duckdb:///{tmp_path / 'cap.duckdb'}")
    assert wh.scalar("SELECT current_setting('memory_limit')").replace(" ", "") in ("256.0MiB", "244.1MiB", "256MB")
    monkeypatch.setenv("TRUEUP_DUCKDB_MEMORY_LIMIT", "lots; DROP TABLE x")
    with pytest.raises(ValueError, match="TRUEUP_DUCKDB_MEMORY_LIMIT"):
        Warehouse(f"duckdb:///{tmp_path / 'cap.duckdb'}")


def _nothing_left(wh: Warehouse) -> None:
    assert int(wh.scalar("SELECT count(*) FROM quality.quarantine")) == 0
    assert int(wh.scalar("SELECT count(*) FROM quality.gate_results")) == 0


def test_gx_failing_in_its_worker_process_fails_the_gate_with_its_message(tmp_path, validator, monkeypatch):
    rows = _rows()
    wh = _warehouse(tmp_path, rows)
    ensure_quality_tables(wh)
    monkeypatch.setenv("TRUEUP_GX_WORKER", "process")
    real = gx_worker_module.GxTally._validate

    def cannot_evaluate(self, rule_ids, frame, references=None):   # runs in the forked worker
        if "currency_iso" in rule_ids:
            raise GateDisagreement("erp_invoices.inbound: GX could not evaluate currency_iso: boom")
        return real(self, rule_ids, frame, references)

    monkeypatch.setattr(gx_worker_module.GxTally, "_validate", cannot_evaluate)
    with pytest.raises(GateDisagreement, match="could not evaluate currency_iso: boom"):
        gate_partitions(wh, CONTRACT, [DAY1, DAY2], "run-1", tmp_path / "reports", validator, chunk_rows=4)
    _nothing_left(wh)


def test_a_gx_worker_that_dies_fails_the_gate_clearly(tmp_path, validator, monkeypatch):
    import os

    rows = _rows()
    wh = _warehouse(tmp_path, rows)
    ensure_quality_tables(wh)
    monkeypatch.setenv("TRUEUP_GX_WORKER", "process")
    monkeypatch.setattr(gx_worker_module, "UNIQUE_BUCKET_ROWS", 4)  # so the worker spills its keys
    monkeypatch.setattr(gx_worker_module.GxTally, "_validate", lambda self, *a, **k: os._exit(9))  # e.g. OOM-killed
    with pytest.raises(GxWorkerError, match="ended without an answer"):
        gate_partitions(wh, CONTRACT, [DAY1, DAY2], "run-1", tmp_path / "reports", validator, chunk_rows=4,
                        scratch_dir=tmp_path / "scratch")
    _nothing_left(wh)
    assert not any((tmp_path / "scratch").iterdir())   # the dead worker's spilled keys are gone too


def test_the_gx_worker_setting_is_validated(monkeypatch):
    monkeypatch.setenv("TRUEUP_GX_WORKER", "gpu")
    with pytest.raises(ValueError, match="TRUEUP_GX_WORKER must be"):
        gx_worker_module.worker_mode()


def test_where_no_worker_process_can_start_gx_runs_in_a_thread(tmp_path, validator, monkeypatch):
    import multiprocessing.context

    def refuse(self):   # what a daemonic process gets: it may not have children
        raise AssertionError("daemonic processes are not allowed to have children")

    monkeypatch.setenv("TRUEUP_GX_WORKER", "process")
    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start", refuse)
    rows = _rows()
    wh = _warehouse(tmp_path, rows)
    got = gate_partitions(wh, CONTRACT, [DAY1, DAY2], "run-1", tmp_path / "reports", validator, chunk_rows=5)
    expected = _expected(rows, validator)
    for day in (DAY1, DAY2):
        assert got[day][0].unexpected_counts == expected[day].unexpected_counts
        assert got[day][0].rows_passed == expected[day].rows_passed


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_gx_counts_the_last_rows_of_a_batch_too(validator, monkeypatch, mode):
    """GX's worker validates row rules in pieces of several chunks and references in slices:
    the rows of the last, unfinished piece and slice are counted when the batch ends, not lost."""
    import pyarrow as pa

    from trueup.quality.gx_worker import GxCounts

    monkeypatch.setattr(gx_worker_module, "ROW_PIECE_ROWS", 4)
    monkeypatch.setattr(gx_worker_module, "WHOLE_SLICE_ROWS", 4)
    rows = pd.DataFrame([_invoice(n, DAY1) for n in range(1, 7)]
                        + [_invoice(7, DAY1, order_number="SO-404"), _invoice(8, DAY1, currency="XXX")])
    gx = GxCounts(CONTRACT, {"erp_order_numbers": ["SO-1001"], "erp_customer_numbers": ["C1001"]}, validator,
                  mode, batch_rows=len(rows))
    for start in (0, 3, 6):   # chunks of 3, 3 and 2 rows: the bad rows are in the last, short piece
        gx.submit(pa.Table.from_pandas(rows.iloc[start:start + 3], preserve_index=False))
    counts, success = gx.result()
    assert counts["currency_iso"] == 1 and counts["order_exists"] == 1 and sum(counts.values()) == 2
    assert not success


def test_gx_runs_in_a_thread_for_a_small_batch_and_in_a_process_for_a_large_one(monkeypatch):
    """Unset, TRUEUP_GX_WORKER follows the batch's size; set, it holds for every batch."""
    monkeypatch.delenv("TRUEUP_GX_WORKER", raising=False)
    small, large = gx_worker_module.SMALL_BATCH_ROWS - 1, gx_worker_module.SMALL_BATCH_ROWS
    assert gx_worker_module.worker_mode(small) == "thread"
    assert gx_worker_module.worker_mode(large) == "process" and gx_worker_module.worker_mode() == "process"
    monkeypatch.setenv("TRUEUP_GX_WORKER", "process")
    assert gx_worker_module.worker_mode(small) == "process"
    monkeypatch.setenv("TRUEUP_GX_WORKER", "thread")
    assert gx_worker_module.worker_mode(large) == "thread"
