"""The ERP schema (connectors/erp_schema.py) on SQLite and on PostgreSQL."""
from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from trueup.connectors import erp_schema as erp
from trueup.connectors.erp_schema import (
    create_erp_schema,
    customers,
    invoices,
    make_erp_engine,
    payments,
    sales_orders,
    to_money,
)

SPEC_COLUMNS = {
    "customers": ["customer_number", "name", "tax_id", "country", "currency", "crm_company_id",
                  "credit_limit", "created_at", "updated_at"],
    "sales_orders": ["order_number", "customer_number", "crm_deal_id", "order_date", "currency",
                     "total_amount", "status", "source", "created_at", "updated_at"],
    "invoices": ["invoice_number", "order_number", "customer_number", "issue_date", "due_date",
                 "currency", "amount", "status", "created_at", "updated_at"],
    "payments": ["payment_id", "invoice_number", "amount", "currency", "received_at", "method",
                 "created_at", "updated_at"],
}
NOT_NULL = {
    "customers": {"customer_number", "name", "country", "currency", "created_at", "updated_at"},
    "sales_orders": set(SPEC_COLUMNS["sales_orders"]) - {"crm_deal_id"},
    "invoices": set(SPEC_COLUMNS["invoices"]),
    "payments": set(SPEC_COLUMNS["payments"]),
}
NOW = datetime(2026, 11, 24, 12, 30, 15, 123456)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'erp.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    eng = make_erp_engine(url)
    create_erp_schema(eng)
    yield eng
    eng.dispose()


def _customer(n: str = "C1", **kw):
    row = dict(customer_number=n, name=f"Customer {n}", tax_id=None, country="DE", currency="EUR",
               crm_company_id=None, credit_limit=Decimal("1000.00"), created_at=NOW, updated_at=NOW)
    row.update(kw)
    return row


def _order(n: str = "SO-1", customer: str = "C1", **kw):
    row = dict(order_number=n, customer_number=customer, crm_deal_id=None, order_date=date(2026, 11, 24),
               currency="EUR", total_amount=Decimal("10.00"), status="open", source="manual",
               created_at=NOW, updated_at=NOW)
    row.update(kw)
    return row


def _invoice(n: str = "INV-1", order: str = "SO-1", customer: str = "C1", **kw):
    row = dict(invoice_number=n, order_number=order, customer_number=customer,
               issue_date=date(2026, 11, 24), due_date=date(2026, 12, 24), currency="EUR",
               amount=Decimal("10.00"), status="open", created_at=NOW, updated_at=NOW)
    row.update(kw)
    return row


def _payment(n: str = "PAY-1", invoice: str = "INV-1", **kw):
    row = dict(payment_id=n, invoice_number=invoice, amount=Decimal("10.00"), currency="EUR",
               received_at=NOW, method="wire", created_at=NOW, updated_at=NOW)
    row.update(kw)
    return row


def _seed(conn):
    conn.execute(customers.insert(), [_customer()])
    conn.execute(sales_orders.insert(), [_order()])
    conn.execute(invoices.insert(), [_invoice()])


# -- structure ----------------------------------------------------------------------------
def test_tables_and_columns_match_spec(engine):
    insp = sa.inspect(engine)
    assert set(SPEC_COLUMNS) <= set(insp.get_table_names())
    for table, cols in SPEC_COLUMNS.items():
        info = {c["name"]: c for c in insp.get_columns(table)}
        assert [c for c in info if c in cols] == cols, table
        for c in cols:
            assert info[c]["nullable"] == (c not in NOT_NULL[table]), (table, c)
    assert insp.get_pk_constraint("customers")["constrained_columns"] == ["customer_number"]
    assert insp.get_pk_constraint("sales_orders")["constrained_columns"] == ["order_number"]
    assert insp.get_pk_constraint("invoices")["constrained_columns"] == ["invoice_number"]
    assert insp.get_pk_constraint("payments")["constrained_columns"] == ["payment_id"]
    fks = {(t, tuple(fk["constrained_columns"]), fk["referred_table"])
           for t in SPEC_COLUMNS for fk in insp.get_foreign_keys(t)}
    assert fks == {
        ("sales_orders", ("customer_number",), "customers"),
        ("invoices", ("order_number",), "sales_orders"),
        ("invoices", ("customer_number",), "customers"),
        ("payments", ("invoice_number",), "invoices"),
    }
    uniques = {(t, tuple(u["column_names"])) for t in SPEC_COLUMNS for u in insp.get_unique_constraints(t)}
    assert {("customers", ("crm_company_id",)), ("sales_orders", ("crm_deal_id",))} <= uniques
    indexed = {(t, tuple(i["column_names"])) for t in SPEC_COLUMNS for i in insp.get_indexes(t)}
    for t in SPEC_COLUMNS:
        assert (t, ("updated_at",)) in indexed
    assert {("sales_orders", ("customer_number",)), ("invoices", ("order_number",)),
            ("payments", ("invoice_number",))} <= indexed


def test_money_column_type_per_dialect(engine):
    insp = sa.inspect(engine)
    col = {c["name"]: c for c in insp.get_columns("invoices")}["amount"]
    if engine.dialect.name == "postgresql":
        assert isinstance(col["type"], sa.Numeric) and (col["type"].precision, col["type"].scale) == (18, 2)
    else:
        assert isinstance(col["type"], sa.Text)


def test_create_schema_twice_is_harmless(engine):
    with engine.begin() as conn:
        conn.execute(customers.insert(), [_customer()])
    create_erp_schema(engine)
    create_erp_schema(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(customers)).scalar_one() == 1


# -- Money ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value, expected",
    [
        (Decimal("0.10") + Decimal("0.20"), Decimal("0.30")),
        (Decimal("9999999999999999.99"), Decimal("9999999999999999.99")),
        ("1234.5", Decimal("1234.50")),
        (7, Decimal("7.00")),
        (0.1 + 0.2, Decimal("0.30")),
        (2.675, Decimal("2.68")),  # Decimal(str(2.675)) then half-even, not binary rounding
        (0.125, Decimal("0.12")),  # half-even
        (Decimal("0.135"), Decimal("0.14")),
    ],
)
def test_money_round_trips_exactly(engine, value, expected):
    with engine.begin() as conn:
        conn.execute(customers.insert(), [_customer()])
        conn.execute(sales_orders.insert(), [_order(total_amount=value)])
    with engine.connect() as conn:
        got = conn.execute(sa.select(sales_orders.c.total_amount)).scalar_one()
    assert isinstance(got, Decimal)
    assert got == expected and str(got) == str(expected)


def test_money_stored_as_exact_text_on_sqlite(tmp_path):
    eng = make_erp_engine(f"sqlite:///{tmp_path / 'erp.db'}")
    create_erp_schema(eng)
    with eng.begin() as conn:
        conn.execute(customers.insert(), [_customer(credit_limit=1234.5)])
        raw = conn.exec_driver_sql("SELECT credit_limit, typeof(credit_limit) FROM customers").one()
    assert tuple(raw) == ("1234.50", "text")
    eng.dispose()


def test_money_sum_on_postgres_is_exact(pg_url):
    eng = make_erp_engine(pg_url)
    create_erp_schema(eng)
    with eng.begin() as conn:
        conn.execute(customers.insert(), [_customer()])
        conn.execute(sales_orders.insert(), [_order(f"SO-{i}", total_amount="0.10") for i in range(10)])
        total = conn.execute(sa.select(sa.func.sum(sales_orders.c.total_amount))).scalar_one()
    assert total == Decimal("1.00")
    eng.dispose()


def test_to_money_rejects_garbage():
    for bad in ("abc", float("nan"), float("inf"), Decimal("1e16"), True):
        with pytest.raises(ValueError):
            to_money(bad)
    assert to_money("-0.001") == Decimal("0.00") and str(to_money("-0.001")) == "0.00"


def test_timestamps_are_naive_utc(engine):
    aware = datetime(2026, 11, 24, 14, 0, 0, 500, tzinfo=timezone(timedelta(hours=2)))
    with engine.begin() as conn:
        conn.execute(customers.insert(), [_customer(created_at=aware, updated_at=NOW)])
    with engine.connect() as conn:
        created, updated = conn.execute(sa.select(customers.c.created_at, customers.c.updated_at)).one()
    assert created == datetime(2026, 11, 24, 12, 0, 0, 500) and created.tzinfo is None
    assert updated == NOW


def test_dates_round_trip(engine):
    with engine.begin() as conn:
        _seed(conn)
    with engine.connect() as conn:
        issue, due = conn.execute(sa.select(invoices.c.issue_date, invoices.c.due_date)).one()
    assert (issue, due) == (date(2026, 11, 24), date(2026, 12, 24))
    assert type(issue) is date


# -- constraints --------------------------------------------------------------------------
def test_unique_crm_deal_id_rejects_second_order_but_allows_many_nulls(engine):
    with engine.begin() as conn:
        conn.execute(customers.insert(), [_customer()])
        conn.execute(sales_orders.insert(), [
            _order("SO-1", crm_deal_id="D-1", source="integration"),
            _order("SO-2"), _order("SO-3"), _order("SO-4"),  # NULL crm_deal_id, many times
        ])
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(sales_orders.insert(), [_order("SO-5", crm_deal_id="D-1", source="integration")])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(sales_orders)).scalar_one() == 4


def test_unique_crm_company_id(engine):
    with engine.begin() as conn:
        conn.execute(customers.insert(), [_customer("C1", crm_company_id="X"), _customer("C2"), _customer("C3")])
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(customers.insert(), [_customer("C4", crm_company_id="X")])


def test_primary_key_rejects_duplicate(engine):
    with engine.begin() as conn:
        conn.execute(customers.insert(), [_customer("C1")])
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(customers.insert(), [_customer("C1")])


@pytest.mark.parametrize(
    "table, row",
    [
        ("sales_orders", _order(customer="C-unknown")),
        ("invoices", _invoice(order="SO-unknown")),
        ("invoices", _invoice(customer="C-unknown")),
        ("payments", _payment(invoice="INV-unknown")),
    ],
)
def test_foreign_keys_reject_unknown_parents(engine, table, row):
    with engine.begin() as conn:
        _seed(conn)
    if table == "invoices":
        row = dict(row, invoice_number="INV-2")
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(erp.metadata.tables[table].insert(), [row])


@pytest.mark.parametrize(
    "table, row",
    [
        ("sales_orders", _order("SO-2", status="shipped")),
        ("sales_orders", _order("SO-2", source="api")),
        ("sales_orders", _order("SO-2", total_amount=Decimal("-0.01"))),
        ("invoices", _invoice("INV-2", status="draft")),
        ("invoices", _invoice("INV-2", amount=Decimal("-5.00"))),
        ("payments", _payment(method="cash")),
        ("payments", _payment(amount=Decimal("0.00"))),
        ("payments", _payment(amount=Decimal("-1.00"))),
        ("sales_orders", _order("SO-2", status=None)),
    ],
)
def test_checks_and_not_null_reject_bad_rows(engine, table, row):
    with engine.begin() as conn:
        _seed(conn)
    with pytest.raises(IntegrityError):
        with engine.begin() as conn:
            conn.execute(erp.metadata.tables[table].insert(), [row])


def test_valid_enumerations_and_zero_amounts_accepted(engine):
    with engine.begin() as conn:
        _seed(conn)
        conn.execute(sales_orders.insert(), [
            _order(f"SO-{s}-{src}", status=s, source=src, total_amount=Decimal("0.00"))
            for s in erp.ORDER_STATUSES for src in erp.ORDER_SOURCES
        ])
        conn.execute(invoices.insert(), [
            _invoice(f"INV-{s}", status=s, amount=0) for s in erp.INVOICE_STATUSES
        ])
        conn.execute(payments.insert(), [
            _payment(f"PAY-{m}", method=m, amount="0.01") for m in erp.PAYMENT_METHODS
        ])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(payments)).scalar_one() == 4


def test_sqlite_engine_pragmas(tmp_path):
    eng = make_erp_engine(f"sqlite:///{tmp_path / 'erp.db'}")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 1000
    eng.dispose()
