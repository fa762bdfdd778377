"""Every failing row of every rule, found with set-based SQL (in-process DuckDB over the batch).

GX reports how many rows fail an expectation but caps the list of which; this evaluates the
same rules as SQL predicates over the whole batch. The gate then checks, rule by rule, that
the count here equals GX's `unexpected_count`.
"""
from __future__ import annotations

import duckdb
import pandas as pd

from .batch import PARTITION, ROW, num_column
from .contracts.rules import Contract, Rule


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _matches(col: str, pattern: str) -> str:
    # Python's `$` (used by GX on pandas) also matches before one trailing newline; RE2's
    # does not, so drop one trailing newline before matching to keep the two in agreement
    return f"regexp_matches(regexp_replace({_q(col)}, '\\n$', ''), '{pattern.replace(chr(39), chr(39) * 2)}')"


def predicate(rule: Rule) -> str:
    """SQL that is TRUE exactly when a row fails `rule` (mirrors GX's null handling)."""
    c = _q(rule.column)
    k = rule.kind
    if k == "not_null":
        p = f"{c} IS NULL"
    elif k == "unique":
        p = f"{c} IS NOT NULL AND count(*) OVER (PARTITION BY {_q(PARTITION)}, {c}) > 1"
    elif k == "in_set":
        p = f"{c} IS NOT NULL AND {c} NOT IN (SELECT v FROM set_{rule.id})"
    elif k == "in_reference":
        p = f"{c} IS NOT NULL AND {c} NOT IN (SELECT v FROM ref_{rule.reference})"
    elif k in ("regex", "decimal"):
        p = f"{c} IS NOT NULL AND NOT {_matches(rule.column, rule.pattern)}"
    elif k == "between":
        n = _q(num_column(rule.column))
        p = f"{n} IS NOT NULL AND ({n} < {float(rule.min_value)!r} OR {n} > {float(rule.max_value)!r})"
    elif k == "a_gte_b":
        o = _q(rule.other)
        p = f"{c} IS NOT NULL AND {o} IS NOT NULL AND {c} < {o}"
    else:
        raise ValueError(f"unknown rule kind {k!r}")
    if rule.when:
        col, value = rule.when
        p = f"coalesce({_q(col)} = '{value}', false) AND ({p})"
    return f"coalesce({p}, false)"


def failing_rows(contract: Contract, batch: pd.DataFrame, references: dict[str, list[str]]) -> pd.DataFrame:
    """A boolean frame, one column per rule id, one row per batch row (ordered by `_row`)."""
    con = duckdb.connect(":memory:")
    try:
        con.register("batch", batch)
        for rule in contract.rules:
            if rule.kind == "in_set":
                con.register(f"set_{rule.id}", pd.DataFrame({"v": pd.Series(rule.values, dtype=object)}))
        for name in contract.references:
            con.register(f"ref_{name}", pd.DataFrame({"v": pd.Series(references.get(name, []), dtype=object)}))
        cols = ", ".join(f"{predicate(r)} AS {_q(r.id)}" for r in contract.rules)
        return con.execute(f"SELECT {_q(ROW)}, {cols} FROM batch ORDER BY {_q(ROW)}").df()
    finally:
        con.close()
