"""ERP extraction for one day: database tables by updated_at, invoices/payments from exports."""
from __future__ import annotations

import datetime as dt
import hashlib
from decimal import Decimal
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from trueup.connectors.erp_exports import ExportCheck, check_export, read_export_file
from trueup.connectors.errors import SyncError

from .drift import check_columns
from .objects import SourceObject

DEFAULT_LOOKBACK = dt.timedelta(hours=1)
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def _text(v) -> str | None:
    if v is None:
        return None
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            v = v.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return v.strftime(TS_FORMAT)
    if isinstance(v, dt.date):
        return v.isoformat()
    if isinstance(v, Decimal):
        return f"{v:.2f}"
    return str(v)


def extract_erp_table_range(engine: Engine, obj: SourceObject, start: dt.datetime, end: dt.datetime,
                            tz: str, lookback: dt.timedelta = DEFAULT_LOOKBACK):
    """Rows of the ERP table changed in [start − look-back, end), each with the `_partition` (business
    day) it belongs to; returned as (rows in range, look-back rows, new source columns)."""
    table = sa.Table(obj.source_name, sa.MetaData(), autoload_with=engine)
    lo = (start - lookback).astimezone(dt.timezone.utc).replace(tzinfo=None)
    hi = end.astimezone(dt.timezone.utc).replace(tzinfo=None)
    with engine.connect() as conn:
        result = conn.execute(sa.select(table).where(table.c.updated_at >= lo, table.c.updated_at < hi)
                              .order_by(table.c[obj.key]))
        cols = list(result.keys())
        rows = [[_text(v) for v in r] for r in result]
    df = pd.DataFrame(rows, columns=cols, dtype=object)
    new_columns = check_columns(obj, df, f"ERP table {obj.source_name}")
    stamp = pd.to_datetime(df["updated_at"], utc=True, format="ISO8601")
    df["_partition"] = stamp.dt.tz_convert(tz).dt.strftime("%Y-%m-%d")
    in_range = stamp >= pd.Timestamp(start.astimezone(dt.timezone.utc))
    return df[in_range].reset_index(drop=True), df[~in_range].reset_index(drop=True), new_columns


class ExportRejected(SyncError):
    """An export that is incomplete or corrupt: rejected whole, loaded later once fixed."""

    error_class = "permanent"


def export_folder(landing_dir: Path, day: str) -> Path:
    return Path(landing_dir) / "exports" / day


def manifest_digest(check: ExportCheck) -> str | None:
    path = Path(check.folder) / "manifest.json"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def read_verified_export(landing_dir: Path, day: str, objects: dict[str, SourceObject]):
    """Verify the day's export and read its files; raise ExportRejected with the reason."""
    check = check_export(export_folder(landing_dir, day))
    if not check.ok:
        raise ExportRejected(f"ERP export {day} rejected: {check.reason}")
    frames, new_columns = {}, {}
    for name, obj in objects.items():
        df = read_export_file(check.data[f"{obj.source_name}.csv"])   # the bytes whose checksum was verified
        new_columns[name] = check_columns(obj, df, f"ERP export {day} {obj.source_name}.csv")
        frames[name] = df
    return check, frames, new_columns
