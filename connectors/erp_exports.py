"""Platform side of the ERP nightly file exports: find, verify and read them.

An export folder ``<landing>/exports/<YYYY-MM-DD>/`` is complete only when
``manifest.json`` exists and parses, lists ``invoices.csv`` and ``payments.csv``, and
every listed file exists with the manifest's sha256 and data-row count (CSV records,
so a quoted newline inside a field counts once). Anything else is rejected whole with
a one-line reason. This module never imports ``sandbox``.

Symbolic links (the folder, the manifest, a file) are rejected: an export is what the ERP
wrote into the landing folder, nothing it points to. Each file is read once; the bytes whose
checksum was verified are the bytes parsed (``ExportCheck.data``) — a file changed between
check and load cannot slip in. Column names must be plain lower-case identifiers (the
warehouse's rule), or the export is rejected like any other contract violation.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import stat
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
    data: dict[str, bytes] = field(default_factory=dict, repr=False)   # the verified bytes of each file


SAFE_COLUMN = re.compile(r"^[a-z_][a-z0-9_]*$")   # as connectors.warehouse.ident accepts
MAX_FILE_BYTES = 2 * 1024 ** 3


def _is_link(path: Path) -> bool:
    try:
        return stat.S_ISLNK(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _read_regular(path: Path) -> bytes:
    """The bytes of a regular file, refusing symbolic links (O_NOFOLLOW) and anything else."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError("not a regular file")
        if st.st_size > MAX_FILE_BYTES:
            raise OSError(f"larger than {MAX_FILE_BYTES} bytes")
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


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


def _count_records(data: bytes) -> tuple[int, list[str] | None]:
    """(data records, header). Blank lines are not records (as in pandas)."""
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True)
    header = next(reader, None)
    if header is None:
        return 0, None
    return sum(1 for row in reader if row), header


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
    if _is_link(folder):
        return fail("export folder is a symbolic link")
    if not folder.is_dir():
        return fail("export folder missing")

    mpath = folder / MANIFEST
    if _is_link(mpath):
        return fail("manifest.json is a symbolic link")
    if not mpath.is_file():
        return fail("manifest.json missing")
    try:
        manifest = json.loads(_read_regular(mpath).decode("utf-8"))
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
        if _is_link(path):
            return fail(f"{name}: is a symbolic link")
        if not path.is_file():
            return fail(f"{name}: file missing")
        try:
            data = _read_regular(path)
        except OSError as exc:
            return fail(f"{name}: unreadable ({exc.strerror or exc})")
        actual = hashlib.sha256(data).hexdigest()
        expected = entry["sha256"].lower()
        if actual != expected:
            return fail(f"{name}: checksum mismatch (manifest {_short(expected)}, file {_short(actual)})")
        try:
            n, header = _count_records(data)
        except UnicodeDecodeError:
            return fail(f"{name}: not valid UTF-8")
        except csv.Error as exc:
            return fail(f"{name}: malformed CSV ({exc})")
        if header is None:
            return fail(f"{name}: empty file (no header row)")
        bad = [c for c in header if not SAFE_COLUMN.match(c)]
        if bad:
            return fail(f"{name}: unsafe column name {bad[0]!r} (columns must be lower-case letters, digits and _)")
        if n != entry["rows"]:
            return fail(f"{name}: {n} rows, manifest says {entry['rows']}")
        check.files[name] = path
        check.rows[name] = n
        check.data[name] = data

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


def read_export_file(source: Path | bytes) -> pd.DataFrame:
    """Read one export CSV with every column as a string ('' for empty fields); `source` is
    best the verified bytes (``ExportCheck.data``), so what is parsed is what was hashed."""
    return pd.read_csv(
        io.BytesIO(source) if isinstance(source, bytes) else source,
        dtype=str,
        keep_default_na=False,
        na_filter=False,
        encoding="utf-8",
    )
