"""One module per reconciliation. Each `find(ctx)` fills the temp table recon_found with the
breaks it sees (set-based SQL) and returns (left_rows, right_rows, matched)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..config import ReconSettings

FOUND_COLUMNS = ("break_type", "business_key", "left_system", "right_system", "left_amount", "right_amount",
                 "risk", "currency", "details")


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

    def found(self, select_sql: str, **more) -> None:
        """INSERT the rows of `select_sql` (columns in FOUND_COLUMNS order) into recon_found."""
        self.exec(f"INSERT INTO recon_found ({', '.join(FOUND_COLUMNS)}) {select_sql}", **more)

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
            made[(layer, obj)] = state_as_of(self.conn, layer, obj, self.as_of)
        return made[(layer, obj)]
