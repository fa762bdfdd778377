"""Platform side of the ERP nightly file exports: find, verify and read them.

An export folder ``<landing>/exports/<YYYY-MM-DD>/`` is complete only when
``manifest.json`` exists and parses, lists ``invoices.csv`` and ``payments.csv``, and
every listed file exists with the manifest's sha256 and data-row count (CSV records,
so a quoted newline inside a field counts once). Anything else is rejected whole with
a one-line reason. This module never imports ``sandbox``.
"""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

EXPECTED_FILES = ("invoices.csv", "payments.csv")
MANIFEST = "manifest.json"

__all__ = [
    "EXPECTED_FILES",
    "MANIFEST",
    "ExportCheck",
    "check_export",
    "list_exports",
    "read_export_file",
]


@dataclass
class ExportCheck:
    export_date: date | None
    folder: Path
    ok: bool
    reason: str | None
    files: dict[str, Path] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    manifest: dict | None = None


def _parse_date(text: str) -> date | None:
    try:
        if len(text) != 10:
            return None
        return date.fromisoformat(text)
    except ValueError:
        return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _count_records(path: Path) -> tuple[int, bool]:
    """(data records, has_header). Blank lines are not records (as in pandas)."""
    with open(path, "r", encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        header = next(reader, None)
        if header is None:
            return 0, False
        return sum(1 for row in reader if row), True


def _short(h: object) -> str:
    s = str(h)
    return s[:8] + "…" if len(s) > 8 else s


def check_export(folder: Path) -> ExportCheck:
    """Verify one export folder; never raises for a bad export (ok=False + reason)."""
    folder = Path(folder)
    check = ExportCheck(export_date=_parse_date(folder.name), folder=folder, ok=False, reason=None)

    def fail(reason: str) -> ExportCheck:
        check.ok = False
        check.reason = reason
        return check

    if check.export_date is None:
        return fail(f"folder name {folder.name!r} is not a YYYY-MM-DD date")
    if not folder.is_dir():
        return fail("export folder missing")

    mpath = folder / MANIFEST
    if not mpath.is_file():
        return fail("manifest.json missing")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return fail(f"manifest.json unparseable: {exc}")
    except OSError as exc:
        return fail(f"manifest.json unreadable: {exc}")
    if not isinstance(manifest, dict):
        return fail("manifest.json unparseable: top level is not an object")
    check.manifest = manifest

    mdate = manifest.get("export_date")
    if mdate != check.export_date.isoformat():
        return fail(f"manifest.json: export_date {mdate!r} does not match folder {folder.name}")
    entries = manifest.get("files")
    if not isinstance(entries, list):
        return fail("manifest.json: 'files' is missing or not a list")

    listed: dict[str, dict] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            return fail(f"manifest.json: files[{i}] is not an object")
        name = entry.get("name")
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            return fail(f"manifest.json: files[{i}] has a bad name {name!r}")
        if name in listed:
            return fail(f"manifest.json: {name} listed twice")
        rows = entry.get("rows")
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
            return fail(f"manifest.json: {name} has a bad row count {rows!r}")
        digest = entry.get("sha256")
        if not isinstance(digest, str) or len(digest) != 64:
            return fail(f"manifest.json: {name} has a bad sha256 {digest!r}")
        listed[name] = entry

    not_listed = [n for n in EXPECTED_FILES if n not in listed]
    if not_listed:
        return fail(f"manifest.json does not list {', '.join(not_listed)}")

    # expected files first, then any extras the manifest names
    for name in list(EXPECTED_FILES) + [n for n in listed if n not in EXPECTED_FILES]:
        entry = listed[name]
        path = folder / name
        if not path.is_file():
            return fail(f"{name}: file missing")
        actual = _sha256(path)
        expected = entry["sha256"].lower()
        if actual != expected:
            return fail(f"{name}: checksum mismatch (manifest {_short(expected)}, file {_short(actual)})")
        try:
            n, has_header = _count_records(path)
        except UnicodeDecodeError:
            return fail(f"{name}: not valid UTF-8")
        except csv.Error as exc:
            return fail(f"{name}: malformed CSV ({exc})")
        if not has_header:
            return fail(f"{name}: empty file (no header row)")
        if n != entry["rows"]:
            return fail(f"{name}: {n} rows, manifest says {entry['rows']}")
        check.files[name] = path
        check.rows[name] = n

    check.ok = True
    check.reason = None
    return check


def list_exports(landing_dir: Path) -> list[ExportCheck]:
    """Check every ``exports/<YYYY-MM-DD>/`` folder, sorted by date.

    Entries whose names are not dates (temporary folders, stray files) are ignored.
    """
    root = Path(landing_dir) / "exports"
    if not root.is_dir():
        return []
    dated = [(d, p) for p in root.iterdir() if p.is_dir() and (d := _parse_date(p.name)) is not None]
    return [check_export(p) for _, p in sorted(dated)]


def read_export_file(path: Path) -> pd.DataFrame:
    """Read one export CSV with every column as a string ('' for empty fields)."""
    return pd.read_csv(
        path,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        encoding="utf-8",
    )
