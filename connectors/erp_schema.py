"""The ERP database contract (docs/architecture.md, "The ERP") as SQLAlchemy 2 Core tables.

Table and column names are fixed by the contract. Amounts use :class:`Money`
(NUMERIC(18,2) on PostgreSQL, an exact decimal string in SQLite); timestamps are
naive UTC (:class:`UtcTimestamp`). This module defines structure only: no data.
"""
from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    CHAR,
    TIMESTAMP,
    CheckConstraint,
    Column,
    Date,
    Engine,
    ForeignKey,
    Index,
    MetaData,
    Numeric,
    Table,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import make_url
from sqlalchemy.types import TypeDecorator

__all__ = [
    "Money",
    "UtcTimestamp",
    "to_money",
    "metadata",
    "customers",
    "sales_orders",
    "invoices",
    "payments",
    "ORDER_STATUSES",
    "ORDER_SOURCES",
    "INVOICE_STATUSES",
    "PAYMENT_METHODS",
    "make_erp_engine",
    "create_erp_schema",
]

CENT = Decimal("0.01")
# NUMERIC(18,2): at most 16 digits before the decimal point.
_MONEY_LIMIT = Decimal("1e16")

ORDER_STATUSES = ("open", "fulfilled", "cancelled")
ORDER_SOURCES = ("manual", "integration")
INVOICE_STATUSES = ("open", "paid", "void")
PAYMENT_METHODS = ("wire", "card", "ach", "check")


def to_money(value: Any) -> Decimal:
    """Convert Decimal/str/int/float to a Decimal with exactly 2 places.

    Floats go through ``Decimal(str(x))`` (their shortest repr), then everything is
    rounded half-even to cents. Raises ValueError for non-finite values, values that
    do not parse, and values outside NUMERIC(18,2).
    """
    if isinstance(value, bool):
        raise ValueError(f"not a money amount: {value!r}")
    try:
        if isinstance(value, Decimal):
            d = value
        elif isinstance(value, float):
            d = Decimal(str(value))
        elif isinstance(value, int):
            d = Decimal(value)
        elif isinstance(value, str):
            d = Decimal(value.strip())
        else:
            # numpy scalars and the like
            d = Decimal(str(value))
    except (InvalidOperation, ValueError, TypeError) as exc:
        raise ValueError(f"not a money amount: {value!r}") from exc
    if not d.is_finite():
        raise ValueError(f"not a finite money amount: {value!r}")
    q = d.quantize(CENT, rounding=ROUND_HALF_EVEN)
    if abs(q) >= _MONEY_LIMIT:
        raise ValueError(f"money amount out of NUMERIC(18,2) range: {value!r}")
    if q == 0:
        q = abs(q)  # no '-0.00'
    return q


class Money(TypeDecorator):
    """Exact 2-place decimal amount.

    PostgreSQL: NUMERIC(18,2). SQLite: TEXT holding the exact decimal string
    (e.g. ``'1234.50'``). Always returns ``decimal.Decimal`` quantised to cents.
    """

    impl = Numeric(18, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Text())
        return dialect.type_descriptor(Numeric(18, 2, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        d = to_money(value)
        if dialect.name == "sqlite":
            return format(d, "f")
        return d

    def process_literal_param(self, value, dialect):
        if value is None:
            return "NULL"
        d = to_money(value)
        return f"'{format(d, 'f')}'" if dialect.name == "sqlite" else format(d, "f")

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if isinstance(value, float):  # a driver handing back floats: use its repr
            value = str(value)
        return Decimal(value).quantize(CENT, rounding=ROUND_HALF_EVEN)

    @property
    def python_type(self):
        return Decimal


class UtcTimestamp(TypeDecorator):
    """TIMESTAMP WITHOUT TIME ZONE holding UTC.

    Aware datetimes are converted to UTC and stored naive; naive datetimes are taken
    to be UTC already. Reads return naive datetimes (UTC).
    """

    impl = TIMESTAMP(timezone=False)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
            value = value.to_pydatetime()
        if isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
            return value
        raise TypeError(f"UtcTimestamp expects a datetime, got {type(value).__name__}")

    @property
    def python_type(self):
        return dt.datetime


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


_NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=_NAMING)

# CAST(... AS NUMERIC) makes the amount checks numeric on SQLite too (TEXT storage);
# on PostgreSQL it is a no-op cast.
customers = Table(
    "customers",
    metadata,
    Column("customer_number", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("tax_id", Text),
    Column("country", CHAR(2), nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("crm_company_id", Text, unique=True),
    Column("credit_limit", Money),
    Column("created_at", UtcTimestamp, nullable=False),
    Column("updated_at", UtcTimestamp, nullable=False),
    CheckConstraint(
        "credit_limit IS NULL OR CAST(credit_limit AS NUMERIC) >= 0",
        name="credit_limit_nonneg",
    ),
    Index(None, "updated_at"),
)

sales_orders = Table(
    "sales_orders",
    metadata,
    Column("order_number", Text, primary_key=True),
    Column(
        "customer_number",
        Text,
        ForeignKey("customers.customer_number"),
        nullable=False,
    ),
    Column("crm_deal_id", Text, unique=True),
    Column("order_date", Date, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("total_amount", Money, nullable=False),
    Column("status", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at", UtcTimestamp, nullable=False),
    Column("updated_at", UtcTimestamp, nullable=False),
    CheckConstraint(_in("status", ORDER_STATUSES), name="status"),
    CheckConstraint(_in("source", ORDER_SOURCES), name="source"),
    CheckConstraint("CAST(total_amount AS NUMERIC) >= 0", name="total_amount_nonneg"),
    Index(None, "updated_at"),
    Index(None, "customer_number"),
)

invoices = Table(
    "invoices",
    metadata,
    Column("invoice_number", Text, primary_key=True),
    Column(
        "order_number",
        Text,
        ForeignKey("sales_orders.order_number"),
        nullable=False,
    ),
    Column(
        "customer_number",
        Text,
        ForeignKey("customers.customer_number"),
        nullable=False,
    ),
    Column("issue_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("amount", Money, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", UtcTimestamp, nullable=False),
    Column("updated_at", UtcTimestamp, nullable=False),
    CheckConstraint(_in("status", INVOICE_STATUSES), name="status"),
    CheckConstraint("CAST(amount AS NUMERIC) >= 0", name="amount_nonneg"),
    Index(None, "updated_at"),
    Index(None, "order_number"),
)

payments = Table(
    "payments",
    metadata,
    Column("payment_id", Text, primary_key=True),
    Column(
        "invoice_number",
        Text,
        ForeignKey("invoices.invoice_number"),
        nullable=False,
    ),
    Column("amount", Money, nullable=False),
    Column("currency", CHAR(3), nullable=False),
    Column("received_at", UtcTimestamp, nullable=False),
    Column("method", Text, nullable=False),
    Column("created_at", UtcTimestamp, nullable=False),
    Column("updated_at", UtcTimestamp, nullable=False),
    CheckConstraint(_in("method", PAYMENT_METHODS), name="method"),
    CheckConstraint("CAST(amount AS NUMERIC) > 0", name="amount_positive"),
    Index(None, "updated_at"),
    Index(None, "invoice_number"),
)


def _sqlite_on_connect(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA journal_mode=WAL")  # in-memory databases answer 'memory'
    finally:
        cur.close()


def make_erp_engine(url: str) -> Engine:
    """Engine for the ERP database.

    SQLite: foreign keys ON, WAL journal and a 30 s busy timeout on every connection.
    PostgreSQL (and anything else): a plain engine with ``pool_pre_ping``.
    """
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    return create_engine(url, pool_pre_ping=True)


def create_erp_schema(engine: Engine) -> None:
    """Create the four ERP tables and their indexes if missing (idempotent)."""
    metadata.create_all(engine, checkfirst=True)
