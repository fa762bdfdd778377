"""Preparing a batch for a contract: text columns, empty strings as missing, and the
numeric shadow columns the range rules need."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .contracts.rules import DECIMAL_RE, Contract

ROW = "_row"
PARTITION = "_partition"


def num_column(col: str) -> str:
    return f"{col}__num"


def blank_to_null(s: pd.Series) -> pd.Series:
    """"" is missing, as in `prepare_batch` (for columns read on their own)."""
    if isinstance(s.dtype, pd.StringDtype):
        empty = s.eq("").fillna(False).astype(bool).to_numpy()
        return s.mask(empty) if empty.any() else s
    s = s.astype(object)
    return s.where(s.notna() & (s != ""), None)


def prepare_batch(contract: Contract, df: pd.DataFrame) -> pd.DataFrame:
    """A copy with every rule column present (missing ones as all-null, so a dropped column
    fails its rules instead of crashing), "" as null, a row number, and numeric shadows."""
    out = df.copy()
    for rule in contract.rules:
        for col in (rule.column, rule.other, rule.when[0] if rule.when else None):
            if col and col not in out.columns:
                out[col] = None
    for col in out.columns:
        s = out[col]
        # pandas' (Arrow-backed) string dtype is kept: Python objects cost ~5× the memory and
        # slow GX down
        if isinstance(s.dtype, pd.StringDtype) or s.dtype == object or pd.api.types.is_string_dtype(s):
            out[col] = blank_to_null(s)
    for rule in contract.rules:
        if rule.kind == "between":
            text = out[rule.column].astype("string")
            ok = text.str.match(DECIMAL_RE).fillna(False).astype(bool)
            out[num_column(rule.column)] = np.where(ok, pd.to_numeric(text.where(ok), errors="coerce"), np.nan)
    if PARTITION not in out.columns:
        out[PARTITION] = "batch"
    out[ROW] = np.arange(len(out), dtype="int64")
    return out.reset_index(drop=True)
