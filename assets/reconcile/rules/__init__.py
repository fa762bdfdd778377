"""One module per reconciliation. Each `find(ctx)` fills the temp table recon_found with the
breaks it sees (set-based SQL) and returns (left_rows, right_rows, matched).

Every finding says what a person needs to act on it:
- `category`: `break` (a real problem, money at risk), `pending` (known work waiting for a person:
  a write held for review or awaiting approval, an ambiguous customer match — its amount is
  pending, not at risk) or `timing` (not due yet: within an SLA or before a due date);
- `problem_date`: the business date the problem began (the close of a deal without an order,
  the day an order came into existence, an invoice's due date…), not the day it was seen;
- `reason` in plain words (what differs, since when, what the platform did) and `owner_system`,
  the system where it is fixed (`crm`, `erp`, or `trueup` for a decision in the platform);
- `chain_key`: the root cause's document chain (`order:<number>`, else `deal:<id>`, …): money
  at risk is counted once per chain (recon.breaks_counted)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trueup.connectors.warehouse import schema_columns

from ..config import ReconSettings

BASE_COLUMNS = ("break_type", "business_key", "left_system", "right_system", "left_amount", "right_amount",
                "risk", "currency", "details")
FOUND_COLUMNS = BASE_COLUMNS + ("problem_date", "category", "owner_system", "reason", "chain_key")
CATEGORIES = ("break", "pending", "timing")


@dataclass
class RuleContext:
    conn: Connection
    dialect: str
    settings: ReconSettings
    as_of: dt.date
    scope: str = "all"
    extra: dict | None = None     # rule-specific inputs (source_vs_warehouse: the live sources)

    def params(self, **more) -> dict:
        s = self.settings
        return {"as_of": self.as_of, "tol": s.tolerance, "window": s.match_window_days,
                "order_sla": s.order_sla_days, "inv_sla": s.invoice_sla_days,
                "inv_complete": s.invoice_complete_days, "cust_sla": s.customer_sla_days, **more}

    def exec(self, sql: str, **more) -> None:
        self.conn.execute(sa.text(sql), self.params(**more))

    def temp(self, name: str, select_sql: str, **more) -> None:
        self.conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
        self.exec(f"CREATE TEMP TABLE {name} AS {select_sql}", **more)

    def scalar(self, sql: str, **more):
        return self.conn.execute(sa.text(sql), self.params(**more)).scalar()

    def found(self, select_sql: str, columns: tuple[str, ...] = FOUND_COLUMNS, **more) -> None:
        """INSERT the rows of `select_sql` (columns in `columns` order) into recon_found."""
        self.exec(f"INSERT INTO recon_found ({', '.join(columns)}) {select_sql}", **more)

    def columns(self, schema: str, table: str) -> list[str]:
        """schema.table's columns ([] if there is none), from one catalog read per schema per
        reconciliation: within its transaction the rules create only temporary tables, so the
        tables they read keep their columns."""
        known = self.__dict__.setdefault("_schema_columns", {})
        if schema not in known:
            known[schema] = schema_columns(self.conn, schema)
        return known[schema].get(table, [])

    def table_exists(self, schema: str, table: str) -> bool:
        return bool(self.columns(schema, table))

    def as_of_sql(self) -> str:
        return "CAST(:as_of AS DATE)"

    def validated(self, obj: str) -> str:
        """validated.<obj> as of the business date: see `asof.state_as_of`."""
        return self._as_of("validated", obj)

    def raw(self, obj: str) -> str:
        """raw.<obj> as of the business date (every landed version, gated or not)."""
        return self._as_of("raw", obj)

    def _as_of(self, layer: str, obj: str) -> str:
        from ..asof import state_as_of

        made = self.__dict__.setdefault("_as_of_tables", {})
        if (layer, obj) not in made:
            made[(layer, obj)] = state_as_of(self.conn, layer, obj, self.as_of, self.columns)
        return made[(layer, obj)]
