"""Dialect helpers: the few expressions DuckDB and PostgreSQL spell differently."""
from __future__ import annotations

AMOUNT = "DECIMAL(18,2)"


def num(dialect: str, expr: str) -> str:
    """A text amount as a decimal, NULL when it does not parse (raw rows are not validated)."""
    if dialect == "duckdb":
        return f"TRY_CAST({expr} AS {AMOUNT})"
    return f"(CASE WHEN {expr} ~ '^\\s*-?[0-9]+(\\.[0-9]+)?\\s*$' THEN CAST({expr} AS {AMOUNT}) END)"


def day(expr: str) -> str:
    """The date of an ISO date or timestamp text."""
    return f"CAST(substr({expr}, 1, 10) AS DATE)"


def json_obj(dialect: str, pairs: dict[str, str]) -> str:
    """A JSON object text from SQL expressions (keys are fixed literals)."""
    args = ", ".join(f"'{k}', {v}" for k, v in pairs.items())
    fn = "json_object" if dialect == "duckdb" else "json_build_object"
    return f"CAST({fn}({args}) AS TEXT)"


def norm_name(expr: str) -> str:
    """Case and punctuation do not make a different name."""
    return f"regexp_replace(lower(coalesce({expr}, '')), '[^a-z0-9]+', '', 'g')"


def txt(*parts: str) -> str:
    """Plain-words text from literal strings and SQL expressions: `txt("'deal '", "d.deal_id")`.
    NULL parts read as empty (concat), numbers and dates as their text."""
    return "concat(" + ", ".join(p if p.startswith("'") else f"CAST({p} AS TEXT)" for p in parts) + ")"


def money(amount: str, currency: str) -> str:
    """`EUR 1234.50` as SQL text parts for `txt`."""
    return f"concat({currency}, ' ', CAST({amount} AS TEXT))"
