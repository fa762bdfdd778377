"""Nightly ERP file exports (writer side, used by the sandbox ERP generator).

Layout (docs/architecture.md, "The ERP")::

    <landing_dir>/exports/<YYYY-MM-DD>/invoices.csv
                                       payments.csv
                                       manifest.json   <- written last

CSV: header row, UTF-8, comma, RFC 4180 quoting (csv.QUOTE_MINIMAL, CRLF records),
columns in the contract's order followed by any extra columns present. Amounts have
exactly 2 decimals, dates are ISO ``YYYY-MM-DD``, timestamps ISO
``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC), missing values are empty fields.
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from datetime import date, datetime, time, timedelta, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, and_, or_, select

from trueup.connectors.erp_schema import invoices as t_invoices
from trueup.connectors.erp_schema import payments as t_payments

INVOICE_COLUMNS = [
    "invoice_number", "order_number", "customer_number", "issue_date", "due_date",
    "currency", "amount", "status", "created_at", "updated_at",
]
PAYMENT_COLUMNS = [
    "payment_id", "invoice_number", "amount", "currency", "received_at", "method",
    "created_at", "updated_at",
]
MONEY_COLUMNS = {"amount", "total_amount", "credit_limit"}
DATE_COLUMNS = {"issue_date", "due_date", "order_date"}
TIMESTAMP_COLUMNS = {"created_at", "updated_at", "received_at"}

_CENT = Decimal("0.01")


# -- formatting ------------------------------------------------------------------------
# Per-column, mostly vectorised: missing values are found with pandas masks, dates are
# formatted once per distinct value (factorize), timestamps via numpy; only amounts need
# one Decimal operation per value (exactness beats speed there).
def _money_text(v) -> str:
    if isinstance(v, Decimal):
        d = v
    elif isinstance(v, float):
        d = Decimal(str(v))
    else:
        d = Decimal(str(v).strip())
    q = d.quantize(_CENT, rounding=ROUND_HALF_EVEN)
    if not q:
        q = abs(q)  # no '-0.00'
    return format(q, "f")


def _by_distinct(s: pd.Series, fmt) -> pd.Series:
    """Apply ``fmt`` once per distinct non-missing value; missing -> ''."""
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    table = np.array([fmt(u) for u in uniques] + [""], dtype=object)  # code -1 -> ''
    return pd.Series(table[codes], index=s.index, dtype=object)


def _format_money(s: pd.Series) -> pd.Series:
    missing = s.isna().tolist()
    vals = s.tolist()
    return pd.Series(["" if m else _money_text(v) for v, m in zip(vals, missing)], index=s.index, dtype=object)


def _date_text(v) -> str:
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return date.fromisoformat(str(v)[:10]).isoformat()


def _format_dates(s: pd.Series) -> pd.Series:
    return _by_distinct(s, _date_text)


def _format_timestamps(s: pd.Series) -> pd.Series:
    # Naive values are UTC already; aware ones are converted to UTC.
    ts = s if pd.api.types.is_datetime64_any_dtype(s) else pd.to_datetime(s, utc=True, format="mixed")
    if getattr(ts.dt, "tz", None) is not None:
        ts = ts.dt.tz_convert("UTC").dt.tz_localize(None)
    texts = np.datetime_as_string(ts.to_numpy().astype("datetime64[us]"), unit="us").tolist()
    missing = ts.isna().tolist()
    return pd.Series(["" if m else t + "Z" for t, m in zip(texts, missing)], index=s.index, dtype=object)


def _format_other(s: pd.Series) -> pd.Series:
    out = s.astype(object).where(s.notna(), "")
    if pd.api.types.is_string_dtype(s) or s.dtype == object:
        return pd.Series([v if isinstance(v, str) else str(v) for v in out.tolist()], index=s.index, dtype=object)
    return out.map(str)


def _all_decimal(s: pd.Series) -> bool:
    try:
        _format_money(s)
        return True
    except (ArithmeticError, ValueError):
        return False


def format_export_frame(df: pd.DataFrame, columns: list[str], strict: bool = True) -> pd.DataFrame:
    """Return a frame of strings in export order: contract columns, then extras.

    strict=False lets a frame that drifted from the contract (a renamed column) be
    written as it is — the generator uses it to simulate schema drift."""
    missing = [c for c in columns if c not in df.columns]
    if missing and strict:
        raise ValueError(f"export frame lacks contract columns: {', '.join(missing)}")
    columns = [c for c in columns if c in df.columns]
    order = list(columns) + [c for c in df.columns if c not in columns]
    out = {}
    for c in order:
        s = df[c]
        try:
            if c in MONEY_COLUMNS and (strict or _all_decimal(s)):
                out[c] = _format_money(s)
            elif c in MONEY_COLUMNS:  # drifted (non-strict): written as the source had it
                out[c] = _format_other(s)
            elif c in DATE_COLUMNS:
                out[c] = _format_dates(s)
            elif c in TIMESTAMP_COLUMNS:
                out[c] = _format_timestamps(s)
            else:
                out[c] = _format_other(s)
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise ValueError(f"export column {c!r}: cannot format value ({exc!r})") from exc
    return pd.DataFrame(out, columns=order, index=df.index)


# -- writing ---------------------------------------------------------------------------
def _write_atomic_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_csv_atomic(path: Path, frame: pd.DataFrame) -> str:
    """Write ``frame`` (all strings) as CSV via a temp name + rename; return sha256."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        w.writerow(list(frame.columns))
        w.writerows(frame.itertuples(index=False, name=None))
        fh.flush()
        os.fsync(fh.fileno())
    h = hashlib.sha256()
    with open(tmp, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    os.replace(tmp, path)
    return h.hexdigest()


def _utc_z(ts: datetime) -> str:
    if ts.tzinfo is not None:
        ts = ts.astimezone(timezone.utc).replace(tzinfo=None)
    return ts.replace(microsecond=0).isoformat() + "Z"


def write_export(
    landing_dir: Path,
    export_date: date,
    invoices: pd.DataFrame,
    payments: pd.DataFrame,
    generated_at: datetime | None = None,
    strict: bool = True,
) -> Path:
    """Write ``exports/<export_date>/`` with both CSVs and, last, ``manifest.json``.

    Rewriting an existing date first removes its manifest (so the folder reads as
    incomplete while files are replaced), then writes the files, then the manifest.
    Returns the export folder.
    """
    folder = Path(landing_dir) / "exports" / export_date.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = folder / "manifest.json"
    manifest_path.unlink(missing_ok=True)

    files = []
    for name, df, cols in (
        ("invoices.csv", invoices, INVOICE_COLUMNS),
        ("payments.csv", payments, PAYMENT_COLUMNS),
    ):
        frame = format_export_frame(df, cols, strict=strict)
        digest = _write_csv_atomic(folder / name, frame)
        files.append({"name": name, "rows": int(len(frame)), "sha256": digest})

    generated_at = generated_at or datetime.now(timezone.utc)
    manifest = {
        "export_date": export_date.isoformat(),
        "generated_at": _utc_z(generated_at),
        "files": files,
    }
    _write_atomic_bytes(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return folder


# -- reading the ERP -------------------------------------------------------------------
def export_rows_from_db(engine: Engine, day: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Invoices and payments created or updated on ``day`` (UTC), ordered by key."""
    start = datetime.combine(day, time.min)
    end = start + timedelta(days=1)

    def query(table, key):
        touched = or_(
            and_(table.c.created_at >= start, table.c.created_at < end),
            and_(table.c.updated_at >= start, table.c.updated_at < end),
        )
        return select(table).where(touched).order_by(table.c[key])

    with engine.connect() as conn:
        inv = pd.read_sql(query(t_invoices, "invoice_number"), conn, coerce_float=False)
        pay = pd.read_sql(query(t_payments, "payment_id"), conn, coerce_float=False)
    return inv, pay
