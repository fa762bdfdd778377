"""Masking of personal data outside the system that owns it (quarantine payloads, logs,
metadata). Masks keep enough shape to debug a row without revealing the person."""
from __future__ import annotations

import functools
import re

PII_NAME_HINTS = ("email", "phone", "firstname", "lastname", "first_name", "last_name", "contact_name")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")


@functools.lru_cache(maxsize=4096)   # called per value of every quarantined row: names repeat
def is_pii_column(name: str, declared: tuple[str, ...] = ()) -> bool:
    return name in declared or any(h in name.lower() for h in PII_NAME_HINTS)


def mask_value(column: str, value):
    if value is None:
        return None
    s = str(value)
    if "email" in column.lower():
        local, _, domain = s.partition("@")
        return (local[:1] + "***@" + domain) if domain else "***"
    if "phone" in column.lower():
        digits = re.sub(r"\D", "", s)
        return "***" + digits[-2:] if len(digits) > 2 else "***"
    return (s[:1] + "***") if s else s


def mask_record(record: dict, declared: tuple[str, ...] = ()) -> dict:
    """Mask PII columns, and any email address that shows up in another text field."""
    out = {}
    for k, v in record.items():
        if is_pii_column(k, declared):
            out[k] = mask_value(k, v)
        elif isinstance(v, str) and _EMAIL.search(v):
            out[k] = _EMAIL.sub(lambda m: mask_value("email", m.group(0)), v)
        else:
            out[k] = v
    return out


def mask_text(text: str) -> str:
    return _EMAIL.sub(lambda m: mask_value("email", m.group(0)), text)


def mask_frame(df, declared: tuple[str, ...] = ()):
    """`mask_record` for every row at once, column by column (a per-row Python loop cost ~1 s
    per 20k quarantined rows). Gives exactly mask_record's values; nulls stay null."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    out = {}
    for col in df.columns:
        values = df[col]
        present = values.notna().to_numpy()
        s = values.astype("str")
        name = col.lower()
        if is_pii_column(col, declared):
            if "email" in name:
                parts = s.str.extract(r"^([^@]*)@(.*)$", flags=re.S)
                local, domain = parts[0].fillna(""), parts[1].fillna("")
                masked = np.where(domain.to_numpy() != "", (local.str[:1] + "***@" + domain).to_numpy(), "***")
            elif "phone" in name:
                digits = s.str.replace(r"\D", "", regex=True)
                masked = np.where(digits.str.len().to_numpy() > 2, ("***" + digits.str[-2:]).to_numpy(), "***")
            else:
                masked = np.where(s.to_numpy() == "", "", (s.str[:1] + "***").to_numpy())
            out[col] = pd.Series(np.where(present, masked, None), index=df.index, dtype=object)
            continue
        # a text field with an email address in it: Arrow's RE2 finds candidates fast (its \s is
        # narrower than Python's, so it finds every row Python would; pandas would fall back to
        # Python's re for that reason), Python masks them
        found = pc.match_substring_regex(pa.array(s, from_pandas=True), _EMAIL.pattern)
        hits = found.fill_null(False).to_numpy(zero_copy_only=False) & present
        if hits.any():
            column = values.astype(object).where(pd.Series(present, index=df.index), None)
            column[hits] = [mask_text(str(v)) for v in column[hits]]
            out[col] = column
        else:
            out[col] = values
    return pd.DataFrame(out, index=df.index)
