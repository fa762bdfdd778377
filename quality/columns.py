"""The gate's own columns beside a batch's data: the day a row belongs to, its number within
a chunk, and the numeric shadow a range rule reads instead of the text column."""
from __future__ import annotations

ROW = "_row"
PARTITION = "_partition"


def num_column(col: str) -> str:
    return f"{col}__num"


def quote(name: str) -> str:
    """A column name as a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
