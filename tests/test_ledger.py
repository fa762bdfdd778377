"""The ledger of writes to systems of record: a write planned twice in one call is one entry and
is handed back once (sending it twice would double-post)."""
from __future__ import annotations

from assets.publish.ledger import Write, plan
from connectors.warehouse import Warehouse


def test_a_write_planned_twice_in_one_call_is_recorded_and_returned_once(tmp_path):
    wh = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    order = Write("erp:order:SO-81", "erp", "sales_orders", "create", "SO-81", {"amount": "10.00"})
    other = Write("erp:order:SO-82", "erp", "sales_orders", "create", "SO-82", {"amount": "12.00"})
    again = Write("erp:order:SO-81", "erp", "sales_orders", "create", "SO-81", {"amount": "10.00"})
    to_send = plan(wh, [order, other, again], run_id="r1")
    assert [w.business_key for w in to_send] == ["SO-81", "SO-82"]
    assert int(wh.scalar("SELECT count(*) FROM ops.sor_writes")) == 2
    assert plan(wh, [again], run_id="r2") == [again]   # still planned, not yet sent: handed back, not re-recorded
    assert int(wh.scalar("SELECT count(*) FROM ops.sor_writes")) == 2
