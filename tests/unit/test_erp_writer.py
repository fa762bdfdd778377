"""The ERP writer (assets/publish/erp_writer.py): its bulk insert stores exactly what SQLAlchemy's
own insert stores, on SQLite and on PostgreSQL; and its pipelined send keeps each batch's order of
events (ledger `sent` → ERP insert → ledger `confirmed`), so that a crash at any point of a pass,
followed by the next run, leaves every order in the ERP exactly once and the ledger agreeing."""
from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from trueup.assets.publish import erp_writer
from trueup.assets.publish.ledger import Write, plan
from trueup.connectors.erp_schema import create_erp_schema, customers, make_erp_engine, sales_orders
from trueup.connectors.warehouse import Warehouse

AT = dt.datetime(2026, 11, 3, 4, 5, 6, 789000)


def _customer(i: int, **extra) -> Write:
    payload = {"customer_number": f"C8{i}", "name": f"Company {i} — Ünïcode", "country": "DE", "currency": "EUR",
               "crm_company_id": str(i), **extra}
    return Write(f"erp-customer:crm-company:{i}", "erp", "customers", "create", f"C8{i}", payload)


def _order(i: int, amount: str = "1234.50", customer: int = 1) -> Write:
    payload = {"order_number": f"SO-8{i}", "customer_number": f"C8{customer}", "crm_deal_id": str(i),
               "order_date": "2026-10-31", "currency": "EUR", "total_amount": amount, "status": "open",
               "source": "integration"}
    return Write(f"erp-order:crm-deal:{i}", "erp", "sales_orders", "create", f"SO-8{i}", payload)


@pytest.fixture(params=["sqlite", "postgresql"])
def two_erps(request, tmp_path):
    """Two fresh, empty ERP databases of one kind."""
    if request.param == "sqlite":
        urls = [f"sqlite:///{tmp_path / f'erp{i}.sqlite'}" for i in range(2)]
    else:
        cluster = request.getfixturevalue("pg_cluster")
        urls = [cluster.create_database() for _ in range(2)]
    engines = [make_erp_engine(u) for u in urls]
    for e in engines:
        create_erp_schema(e)
    yield engines
    for e in engines:
        e.dispose()


def _table(engine, table) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key.columns))]


def test_the_bulk_insert_stores_what_sqlalchemys_insert_stores(two_erps):
    mine, reference = two_erps
    custs = [_customer(1, tax_id=None, credit_limit="1000"), _customer(2, tax_id="DE123", credit_limit="0.10")]
    # amounts as the plan writes them, and the odd ones the Money type rounds or normalises
    orders = [_order(i, amount) for i, amount in enumerate(["1234.50", "0.10", "99999999.99", "-0.00", "7", "2.005"])]
    for obj, ws in (("customers", custs), ("sales_orders", orders)):
        assert erp_writer._insert(mine, obj, ws, AT) is None
        with reference.begin() as conn:
            conn.execute(erp_writer.TABLES[obj][0].insert(), [erp_writer._row(obj, w.payload, AT) for w in ws])
    assert _table(mine, customers) == _table(reference, customers)
    assert _table(mine, sales_orders) == _table(reference, sales_orders)
    assert len(_table(mine, sales_orders)) == len(orders)
    # a refused batch is handed back as the ERP's refusal, and nothing of it is kept
    refused = erp_writer._insert(mine, "sales_orders", [_order(100), _order(0)], AT)
    assert isinstance(refused, sa.exc.IntegrityError)
    assert len(_table(mine, sales_orders)) == len(orders)


class Crash(Exception):
    """The process dies here (what it finished before stays finished)."""


class _Steps:
    """Counts the writer's steps (each ledger transition, each ERP insert) and crashes at one of
    them, before or after doing it. Records the order in which the steps happened."""

    def __init__(self, monkeypatch, crash_at: int | None = None, after: bool = False):
        self.n, self.crash_at, self.after, self.events = 0, crash_at, after, []
        self.lock = threading.Lock()
        real_state, real_insert = erp_writer.set_state, erp_writer._insert

        def set_state(wh, ids, state, *a, **kw):
            self._step(lambda: real_state(wh, ids, state, *a, **kw), (state, tuple(ids)))

        def insert(engine, obj, ws, at):
            ids = tuple(w.write_id for w in ws)
            return self._step(lambda: real_insert(engine, obj, ws, at), ("insert", ids))

        monkeypatch.setattr(erp_writer, "set_state", set_state)
        monkeypatch.setattr(erp_writer, "_insert", insert)

    def _step(self, do, event):
        with self.lock:
            k, self.n = self.n, self.n + 1
        if k == self.crash_at and not self.after:
            raise Crash(k)
        out = do()
        with self.lock:
            self.events.append(event)
        if k == self.crash_at:
            raise Crash(k)
        return out


def test_a_crash_at_any_step_of_a_pipelined_send_leaves_every_order_in_the_erp_exactly_once(tmp_path, monkeypatch):
    monkeypatch.setattr(erp_writer, "BATCH", 3)          # 8 orders: batches of 3, 3 and 2
    wh = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    erp = make_erp_engine(f"sqlite:///{tmp_path / 'erp.sqlite'}")
    create_erp_schema(erp)
    with erp.begin() as conn:
        conn.execute(customers.insert(), [erp_writer._row("customers", _customer(1).payload, AT)])
    writes = [_order(i) for i in range(8)]
    expected = {w.payload["order_number"] for w in writes}

    def reset() -> None:
        with wh.begin() as conn:
            conn.execute(sa.text("DELETE FROM ops.sor_writes"))
        with erp.begin() as conn:
            conn.execute(sales_orders.delete())

    def erp_orders() -> list[str]:
        with erp.connect() as conn:
            return [r[0] for r in conn.execute(sa.select(sales_orders.c.order_number))]

    def ledger() -> dict[str, str]:
        df = wh.query_df("SELECT business_key, state FROM ops.sor_writes")
        return dict(zip(df["business_key"], df["state"]))

    # a pass without a crash: each batch `sent` before its insert, `confirmed` after it
    plan(wh, writes, "clean")
    steps = _Steps(monkeypatch)
    assert erp_writer.send(wh, erp, writes, "clean") == {"confirmed": 8, "rejected": 0}
    batches = [tuple(w.write_id for w in writes[i:i + 3]) for i in range(0, 8, 3)]
    for ids in batches:
        at = {kind: steps.events.index((kind, ids)) for kind in ("sent", "insert", "confirmed")}
        assert at["sent"] < at["insert"] < at["confirmed"], steps.events
    total = steps.n
    assert total == 9 and sorted(erp_orders()) == sorted(expected)
    monkeypatch.undo()
    monkeypatch.setattr(erp_writer, "BATCH", 3)

    for crash_at, after in ((k, a) for k in range(total) for a in (False, True)):
        with wh.held_open():        # as the publish step holds it (and ~3x faster here)
            reset()
            plan(wh, writes, "crashing")
            with monkeypatch.context() as m:
                _Steps(m, crash_at, after)
                with pytest.raises(Crash):
                    erp_writer.send(wh, erp, writes, "crashing")
            where = f"crash {'after' if after else 'before'} step {crash_at}"
            landed, states = erp_orders(), ledger()
            # at the crash: nothing is confirmed that the ERP lacks, nothing is in the ERP that
            # the ledger does not show as sent (or confirmed)
            assert all(o in landed for o, s in states.items() if s == "confirmed"), where
            assert all(states[o] in ("sent", "confirmed") for o in landed), where
            # the next run: read back, plan, send
            for obj in ("customers", "sales_orders"):
                erp_writer.resolve_pending(wh, erp, obj, "next")
            erp_writer.send(wh, erp, plan(wh, writes, "next"), "next")
            landed = erp_orders()
            assert sorted(landed) == sorted(expected) and len(set(landed)) == len(landed), where
            assert ledger() == {o: "confirmed" for o in expected}, where
    erp.dispose()


def test_a_batch_whose_payloads_differ_in_their_fields_is_refused_with_one_line(tmp_path):
    erp = make_erp_engine(f"sqlite:///{tmp_path / 'erp.sqlite'}")
    create_erp_schema(erp)
    odd = _customer(2, tax_id="DE1")
    with pytest.raises(ValueError, match=r"ERP customers write C82 has the fields .*tax_id"):
        erp_writer._insert(erp, "customers", [_customer(1), odd], AT)
    assert _table(erp, customers) == []
    erp.dispose()
