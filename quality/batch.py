"""Preparing a batch for a contract: text columns, empty strings as missing, and the
numeric shadow columns the range rules need."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .columns import PARTITION, ROW, num_column
from .contracts.rules import DECIMAL_RE, Contract
from .rule_kinds import kind_of

__all__ = ["PARTITION", "ROW", "num_column", "blank_to_null", "decimal_values", "money_values", "prepare_batch"]


def blank_to_null(s: pd.Series) -> pd.Series:
    """"" is missing, as in `prepare_batch` (for columns read on their own)."""
    if isinstance(s.dtype, pd.StringDtype):
        empty = s.eq("").fillna(False).astype(bool).to_numpy()
        return s.mask(empty) if empty.any() else s
    s = s.astype(object)
    return s.where(s.notna() & (s != ""), None)


def decimal_values(values: pd.Series) -> np.ndarray:
    """Each value as a float where its text is a plain decimal (DECIMAL_RE), NaN elsewhere.
    Arrow's regex and cast (RE2, as pandas' Arrow strings use): 4x faster than pandas'
    `to_numeric` and equal to it on these strings (checked on 2M amounts)."""
    try:
        text = pa.array(values.astype("string"), from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):   # mixed Python types: compare as text
        text = pa.array(values.map(lambda v: None if v is None or v != v else str(v)), pa.string())
    plain = pc.match_substring_regex(text, DECIMAL_RE)
    numbers = pc.cast(pc.if_else(plain, text, pa.scalar(None, text.type)), pa.float64())
    return numbers.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)


def money_values(values: pd.Series) -> np.ndarray:
    """Amounts as the gate counts them (conservation): pandas' `to_numeric`, unparsable as 0.
    Plain decimals take the Arrow path; only the rest (a few bad rows) goes through pandas."""
    numbers = decimal_values(values)
    other = np.isnan(numbers) & values.notna().to_numpy() & (values.astype("string") != "").fillna(False).to_numpy()
    if other.any():
        numbers = numbers.copy()
        numbers[other] = pd.to_numeric(values[other], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.nan_to_num(numbers, nan=0.0)


def prepare_batch(contract: Contract, df: pd.DataFrame) -> pd.DataFrame:
    """A copy with every rule column present (missing ones as all-null, so a dropped column
    fails its rules instead of crashing), "" as null, a row number, and numeric shadows."""
    out = df.copy(deep=False)   # copy-on-write: a column that needs no change is shared, not copied
    for col in contract.rule_columns:
        if col not in out.columns:
            out[col] = None
    for col in out.columns:
        s = out[col]
        # pandas' (Arrow-backed) string dtype is kept: Python objects cost ~5× the memory and
        # slow GX down
        if isinstance(s.dtype, pd.StringDtype) or s.dtype == object or pd.api.types.is_string_dtype(s):
            out[col] = blank_to_null(s)
    for rule in contract.rules:
        shadow = kind_of(rule).numeric_shadow(rule)
        if shadow:
            out[shadow] = decimal_values(out[rule.column])
    if PARTITION not in out.columns:
        out[PARTITION] = "batch"
    out[ROW] = np.arange(len(out), dtype="int64")
    return out.reset_index(drop=True)
