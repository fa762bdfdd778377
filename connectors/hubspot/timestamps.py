"""CRM timestamps: HubSpot sends epoch milliseconds or ISO-8601, depending on the property."""
from __future__ import annotations

import datetime as dt
from typing import Any


def to_epoch_ms(value: Any) -> int | None:
    """Epoch milliseconds from an epoch-ms string/number or an ISO-8601 timestamp."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return int(value)
    s = str(value).strip()
    if s.lstrip("-").isdigit():
        return int(s)
    try:
        ts = dt.datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=dt.timezone.utc)
    return int(round(ts.timestamp() * 1000))
