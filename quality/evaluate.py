"""Every failing row of every rule, found with set-based SQL (in-process DuckDB over each chunk).

GX reports how many rows fail an expectation but caps the list of which; this evaluates the
same rules as SQL predicates over every row. The gate then checks, rule by rule, that the
count here equals GX's `unexpected_count`.
"""
from __future__ import annotations

import os

import duckdb
import pandas as pd
import pyarrow as pa

from .columns import PARTITION, ROW
from .columns import quote as _q
from .contracts.rules import DECIMAL_RE, Contract, Rule
from .rule_kinds import duplicated_values_table, kind_of, reference_table


def predicate(rule: Rule, duplicates_table: bool = False) -> str:
    """SQL that is TRUE exactly when a row fails `rule` (its kind's predicate). Uniqueness is a
    window over the batch, or — when the batch comes in chunks (`duplicates_table`) — a lookup
    in `dup_<rule id>` (partition `p`, value `v`), the values found more than once in the whole batch."""
    return kind_of(rule).predicate(rule, chunked=duplicates_table)


def money_sql(column: str) -> str:
    """A row's amount as the gate counts it (conservation): the text as a number, as the
    warehouse sums what validated holds (`Warehouse.number_sql`); missing, unparsable or
    not finite counts as 0."""
    n = f"TRY_CAST({_q(column)} AS DOUBLE)"
    return f"CASE WHEN isfinite({n}) THEN {n} ELSE 0 END"


def is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t)


def _in_memory_database(threads: int | None) -> duckdb.DuckDBPyConnection:
    """This process's in-memory DuckDB database for evaluating chunks, one per thread setting.
    Opening one cost ~20 ms (and a small night's gates open eleven); a cursor of it is a separate
    connection, opened in microseconds, whose registered tables go when it closes."""
    key = (os.getpid(), threads)
    database = _DATABASES.get(key)
    if database is None:
        database = _DATABASES[key] = duckdb.connect(":memory:", config={"threads": threads} if threads else {})
    return database


_DATABASES: dict = {}


class ChunkEvaluator:
    """Every failing row of each chunk of one batch, on one in-process DuckDB connection (the
    value sets and references are registered once, not per chunk).

    A chunk comes raw, as an Arrow table straight from the warehouse's reader, and is prepared
    in the same SQL that evaluates it — "" as missing, absent rule columns as all-null, the
    numeric shadows of range rules — the same preparation `prepare_batch` does in pandas for GX,
    so the agreement proof also checks that the two preparations agree. Preparing in SQL keeps
    the passing rows (98 % of a batch) out of pandas on this side."""

    def __init__(self, contract: Contract, references: dict[str, list[str]],
                 duplicates: dict[str, pd.DataFrame] | None = None, threads: int | None = None):
        self.contract = contract
        self.uses_duplicates = duplicates is not None
        self.con = _in_memory_database(threads).cursor()   # a connection of its own; its tables go at close
        for rule_id, pairs in (duplicates or {}).items():
            self.con.register(duplicated_values_table(rule_id), pa.Table.from_pandas(pairs, preserve_index=False))
        for rule in contract.rules:
            for table, values in kind_of(rule).lookup_tables(rule).items():
                self.con.register(table, pa.table({"v": pa.array(values, pa.string())}))
        for name in contract.references:
            self.con.register(reference_table(name), pa.table({"v": pa.array(references.get(name, []), pa.string())}))
        cols = ", ".join(f"{predicate(r, self.uses_duplicates)} AS {_q(r.id)}" for r in contract.rules)
        any_fails = " OR ".join(_q(r.id) for r in contract.rules) or "false"
        money = contract.money_column
        self._money = money_sql(money) if money else "0"
        self._select = f"{cols} FROM batch) f WHERE {any_fails} ORDER BY {_q(ROW)}"

    def close(self) -> None:
        self.con.close()

    def failing_raw(self, live: pa.Table) -> pd.DataFrame:
        """The failing rows of a raw chunk's live rows (which carry `_row`): `_row`,
        `_partition`, `_money` and one boolean column per rule id, ordered by `_row`."""
        self.con.register("chunk", live)
        try:
            prepared = f"WITH batch AS ({self._prepare_sql(live.schema)}) "
            return self.con.execute(prepared + self._failing_sql(live.column_names)).df()
        finally:
            self.con.unregister("chunk")

    def failing_prepared(self, batch: pd.DataFrame) -> pd.DataFrame:
        """The same for rows `prepare_batch` has prepared (an in-memory batch whose columns mix
        Python types, which Arrow cannot hold): DuckDB scans the frame itself."""
        self.con.register("batch", batch)
        try:
            return self.con.execute(self._failing_sql(list(batch.columns))).df()
        finally:
            self.con.unregister("batch")

    def _failing_sql(self, columns: list[str]) -> str:
        money = self._money if self.contract.money_column in columns else "0"
        return (f"SELECT * FROM (SELECT {_q(ROW)}, CAST({_q(PARTITION)} AS VARCHAR) AS {_q(PARTITION)}, "
                f"{money} AS _money, {self._select}")

    def totals(self, chunk: pa.Table) -> pd.DataFrame:
        """Rows and money per day of a whole raw chunk (tombstones included): `p`, `n`, `money`."""
        self.con.register("chunk", chunk)
        try:
            money = self._money if self.contract.money_column in chunk.column_names else "0"
            part = _q(PARTITION) if PARTITION in chunk.column_names else "'batch'"
            return self.con.execute(f"SELECT CAST({part} AS VARCHAR) AS p, count(*) AS n, "
                                    f"coalesce(sum({money}), 0) AS money FROM chunk GROUP BY 1").df()
        finally:
            self.con.unregister("chunk")

    def _prepare_sql(self, schema: pa.Schema) -> str:
        """`prepare_batch` in SQL over the registered `chunk`."""
        present = dict(zip(schema.names, schema.types))
        rule_cols = self.contract.rule_columns
        replaced = [f"nullif({_q(c)}, '') AS {_q(c)}" for c in rule_cols if c in present and is_text(present[c])]
        select = "*" + (f" REPLACE ({', '.join(replaced)})" if replaced else "")
        added = [f"CAST(NULL AS VARCHAR) AS {_q(c)}" for c in rule_cols if c not in present]
        if PARTITION not in present:
            added.append(f"'batch' AS {_q(PARTITION)}")
        for rule in self.contract.rules:
            shadow = kind_of(rule).numeric_shadow(rule)
            if shadow and shadow not in present:
                if rule.column not in present:
                    added.append(f"CAST(NULL AS DOUBLE) AS {_q(shadow)}")
                    continue
                text = f"nullif(CAST({_q(rule.column)} AS VARCHAR), '')"
                pattern = DECIMAL_RE.replace("'", "''")
                added.append(f"CASE WHEN regexp_matches({text}, '{pattern}') THEN TRY_CAST({text} AS DOUBLE) END "
                             f"AS {_q(shadow)}")
        return f"SELECT {', '.join([select, *added])} FROM chunk"
