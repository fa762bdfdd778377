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
