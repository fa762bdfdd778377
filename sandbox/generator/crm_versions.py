"""Turn the generated history into the CRM record versions that change on one day."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .history import DAY_MS, History


def _iso_ms(ms: np.ndarray) -> np.ndarray:
    return pd.to_datetime(ms, unit="ms", utc=True).strftime("%Y-%m-%dT%H:%M:%S.%f").str[:-3].to_numpy() + "Z"


def _window_max(events: np.ndarray, start: int, end: int) -> np.ndarray:
    """Per row, the latest event timestamp inside [start, end), or -1."""
    inside = (events >= start) & (events < end)
    return np.where(inside, events, -1).max(axis=1)


def deal_versions(h: History, start: int, end: int) -> pd.DataFrame:
    d = h.deals
    events = d[["created_ms", "t1_ms", "t2_ms", "close_ms", "deleted_ms"]].to_numpy()
    ts = _window_max(events, start, end)
    d = d[ts >= 0].copy()
    ts = ts[ts >= 0]
    stage = np.select(
        [d.close_ms <= ts, d.t2_ms <= ts, d.t1_ms <= ts],
        [np.where(d.won, "closedwon", "closedlost"), "presentationscheduled", "qualifiedtobuy"],
        "appointmentscheduled",
    )
    closedate = np.where(d.close_ms <= ts, d.close_ms, d.expected_close)
    return pd.DataFrame({
        "id": d["id"].to_numpy(), "created_ms": d["created_ms"].to_numpy(), "updated_ms": ts,
        "archived": (d["deleted_ms"].to_numpy() >= 0) & (d["deleted_ms"].to_numpy() <= ts),
        "company_id": d["company_id"].to_numpy(),
        "dealname": d["dealname"].to_numpy(), "amount": d["amount"].to_numpy(),
        "deal_currency_code": d["currency"].to_numpy(), "dealstage": stage,
        "pipeline": d["pipeline"].to_numpy(), "closedate": _iso_ms(closedate),
    })


def company_versions(h: History, start: int, end: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """General versions, and the clerks' write-backs of erp_customer_number (loaded separately
    so that the generator never wipes a number the platform wrote)."""
    c = h.companies
    bulk = np.full(len(c), -1, dtype="int64")
    if h.bulk_update_ms is not None:
        bulk = np.where(c["created_ms"].to_numpy() < h.bulk_update_ms, h.bulk_update_ms, -1)
    events = np.column_stack([c[["created_ms", "customer_ms", "writeback_ms"]].to_numpy(), bulk])
    ts = _window_max(events, start, end)
    keep = ts >= 0
    c, ts, bulk = c[keep], ts[keep], bulk[keep]
    bulk_done = (bulk >= 0) & (bulk <= ts)
    general = pd.DataFrame({
        "id": c["id"].to_numpy(), "created_ms": c["created_ms"].to_numpy(), "updated_ms": ts, "archived": False,
        "name": c["name"].to_numpy(), "domain": c["domain"].to_numpy(), "country": c["country"].to_numpy(),
        # the bulk update re-labels every company's industry in one millisecond
        "industry": np.where(bulk_done, c["industry"].str.title().to_numpy(), c["industry"].to_numpy()),
        "lifecyclestage": np.where((c["customer_ms"] >= 0) & (c["customer_ms"] <= ts), "customer", "lead"),
        "tax_id": c["tax_id"].to_numpy(),
    })
    wb = (c["writeback_ms"].to_numpy() >= start) & (c["writeback_ms"].to_numpy() < end)
    writeback = pd.DataFrame({
        "id": c["id"].to_numpy()[wb], "created_ms": c["created_ms"].to_numpy()[wb], "updated_ms": ts[wb],
        "archived": False, "erp_customer_number": c["erp_customer_number"].to_numpy()[wb],
    })
    return general, writeback


def contact_versions(h: History, start: int, end: int) -> pd.DataFrame:
    c = h.contacts
    ts = _window_max(c[["created_ms", "deleted_ms"]].to_numpy(), start, end)
    keep = ts >= 0
    c, ts = c[keep], ts[keep]
    return pd.DataFrame({
        "id": c["id"].to_numpy(), "created_ms": c["created_ms"].to_numpy(), "updated_ms": ts,
        "archived": (c["deleted_ms"].to_numpy() >= 0) & (c["deleted_ms"].to_numpy() <= ts),
        "email": c["email"].to_numpy(), "firstname": c["firstname"].to_numpy(),
        "lastname": c["lastname"].to_numpy(), "phone": c["phone"].to_numpy(),
        "associatedcompanyid": c["company_id"].astype(str).to_numpy(),
    })


__all__ = ["deal_versions", "company_versions", "contact_versions", "DAY_MS"]
