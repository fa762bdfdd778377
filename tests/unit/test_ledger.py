"""The ledger of writes to systems of record: a write planned twice in one call is one entry and
is handed back once (sending it twice would double-post), and a planned write is the same write
in the next run."""
from __future__ import annotations

import pytest

from trueup.assets.publish.ledger import Write, plan
from trueup.connectors.warehouse import Warehouse


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


def test_a_new_customer_is_the_same_write_whatever_order_the_deals_come_in(monkeypatch):
    """The deals view has no row order; a new ERP customer takes its currency from the company's
    earliest deal, so a crashed run's planned customer write is the very write the next run
    plans (before, it could differ and stay `planned` in the ledger for ever)."""
    import datetime as dt

    import pandas as pd

    import trueup.assets.publish.plan as plan_mod

    deals = pd.DataFrame({"id": ["12", "11", "13"], "amount": ["100.00", "200.00", "300.00"],
                          "deal_currency_code": ["USD", "EUR", "GBP"], "company_id": ["7", "7", "7"],
                          "close_date": [dt.date(2026, 10, 2), dt.date(2026, 10, 2), dt.date(2026, 10, 1)]})
    erp_orders = pd.DataFrame({c: pd.Series(dtype=object) for c in
                               ("order_number", "customer_number", "crm_deal_id", "order_date", "total_amount",
                                "currency", "source")})
    erp_customers = pd.DataFrame({"customer_number": pd.Series(dtype=object),
                                  "crm_company_id": pd.Series(dtype=object)})
    monkeypatch.setattr(plan_mod, "read_erp", lambda engine: (erp_orders, erp_customers))
    monkeypatch.setattr(plan_mod, "crosswalk", lambda wh, customers: ({}, set()))
    monkeypatch.setattr(plan_mod, "_companies", lambda wh: pd.DataFrame(
        {"id": ["7"], "name": ["Acme"], "country": ["DE"], "erp_customer_number": [None]}))
    planned = []
    for order in ([0, 1, 2], [2, 1, 0], [1, 0, 2]):
        monkeypatch.setattr(plan_mod, "eligible_deals", lambda wh, a, b, o=order: deals.iloc[o].reset_index(drop=True))
        p = plan_mod.build_plan(None, None, publish_from=dt.date(2026, 9, 1), through=dt.date(2026, 10, 31),
                                reporting_currency="USD", approval_threshold=1e9, approved=set())
        assert len(p.customers) == 1 and len(p.orders) == 3
        planned.append(p.customers[0])
    assert {c.write_id for c in planned} == {planned[0].write_id}
    assert planned[0].payload["currency"] == "GBP"   # deal 13 closed first


def _deal_writebacks(n: int) -> list[Write]:
    return [Write(f"crm-deal:{i}:erp_order_number", "crm", "deals", "update", f"SO-{i}",
                  {"id": str(i), "properties": {"erp_order_number": f"SO-{i}"}}) for i in range(1, n + 1)]


class _Crm:
    """Applies every batch update (version v<id>) until `stop_after` batches, then is interrupted."""

    def __init__(self, stop_after: int | None = None):
        self.batches, self.stop_after = 0, stop_after

    def batch_update(self, obj, inputs):
        from trueup.connectors.hubspot.writes import BatchOutcome

        if self.stop_after is not None and self.batches == self.stop_after:
            raise KeyboardInterrupt   # the operator stops the run mid-pass
        self.batches += 1
        return BatchOutcome(results=[{"id": i["id"], "updatedAt": f"v{i['id']}"} for i in inputs],
                            applied_ids=[i["id"] for i in inputs])


def test_crm_confirmations_recorded_together_still_land_when_the_pass_stops_early(tmp_path):
    """send_crm records `confirmed` for many batches at once (crm_writer.CONFIRM_EVERY): what the CRM
    acknowledged before an interruption is confirmed, with its version; what was sent after is
    `sent` (read back by the next run); nothing is left unaccounted."""
    from trueup.assets.publish import crm_writer

    wh = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    writes = plan(wh, _deal_writebacks(1250), run_id="r1")
    counts = crm_writer.send_crm(wh, _Crm(), writes[:1100], "r1")   # 11 batches: one group of 1,000 and a tail
    assert counts["confirmed"] == 1100
    with pytest.raises(KeyboardInterrupt):
        crm_writer.send_crm(wh, _Crm(stop_after=1), writes[1100:], "r2")
    states = wh.query_df("SELECT state, count(*) AS n, count(target_version) AS versions FROM ops.sor_writes "
                         "GROUP BY state ORDER BY state")
    assert states.to_dict("records") == [{"state": "confirmed", "n": 1200, "versions": 1200},
                                         {"state": "sent", "n": 50, "versions": 0}]
    # each confirmed write carries the version the CRM gave its own deal
    assert int(wh.scalar("SELECT count(*) FROM ops.sor_writes WHERE state = 'confirmed' "
                         "AND target_version <> 'v' || split_part(idempotency_key, ':', 2)")) == 0


def test_write_backs_are_planned_for_what_is_not_written_back_yet(tmp_path):
    """writeback_writes leaves out the ERP orders whose write-back is confirmed with the same number
    (the same payload: the ledger would skip it), so a night does not re-plan every order since
    go-live; an order whose confirmed write-back carried another number is planned again."""
    from trueup.assets.publish import crm_writer
    from trueup.assets.publish.ledger import set_state

    wh = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    orders = [Write(f"erp-order:crm-deal:{d}", "erp", "sales_orders", "create", str(d),
                    {"order_number": f"SO-{d}", "crm_deal_id": str(d)}) for d in (11, 12, 13)]
    set_state(wh, [w.write_id for w in plan(wh, orders, run_id="r1")], "confirmed", "r1")
    backs = {w.payload["id"]: w for w in crm_writer.writeback_writes(wh, "sales_orders")}
    assert sorted(backs) == ["11", "12", "13"] and backs["11"].payload["properties"] == {"erp_order_number": "SO-11"}
    done = [backs["11"], Write(backs["12"].idempotency_key, "crm", "deals", "update", "SO-OLD",
                               {"id": "12", "properties": {"erp_order_number": "SO-OLD"}})]
    set_state(wh, [w.write_id for w in plan(wh, done, run_id="r2")], "confirmed", "r2")
    again = crm_writer.writeback_writes(wh, "sales_orders")
    assert sorted(w.payload["id"] for w in again) == ["12", "13"]
    assert {w.write_id for w in again} == {backs["12"].write_id, backs["13"].write_id}


def test_a_writes_hash_and_id_are_those_ledgers_already_hold():
    """The hash and id a write gets are the ones every earlier release recorded (the JSON of the
    payload, keys sorted, anything else as text): another value would make every write already
    confirmed look new, and send it again."""
    import datetime as dt
    import hashlib
    import json
    from decimal import Decimal

    payload = {"total_amount": Decimal("10.50"), "order_date": dt.date(2026, 10, 31), "name": "Müller & Söhne",
               "nested": {"b": [1, 2.5, None, True], "a": "x"}, "customer_number": None}
    write = Write("erp-order:crm-deal:7", "erp", "sales_orders", "create", "SO-87", payload)
    text = json.dumps(payload, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()[:24]
    assert (write.payload_json, write.payload_hash) == (text, digest)
    assert write.write_id == hashlib.sha256(f"erp-order:crm-deal:7|{digest}".encode()).hexdigest()[:24]
    assert write == Write("erp-order:crm-deal:7", "erp", "sales_orders", "create", "SO-87", dict(payload))
    with pytest.raises(AttributeError):
        write.no_such_attribute
