"""The initial load: the sources' history from before the platform's first business day.

A deployment starts on a first business day (TRUEUP_START_DATE, the first partition), but its
CRM and ERP hold records, and the ERP's export folder holds exports, from long before it. The
first partition's window therefore opens at the beginning of time: its run reads every ERP row
and CRM record modified before it, and every export folder dated before it, and lands them with
`_partition` = the first day. raw keeps each version; the current views and the state as of a
day take the latest version by modification time, so one partition holding many days' versions
needs nothing else. A source whose history starts on the first day (the sandbox's worlds) reads
exactly what it read before. source_vs_warehouse reads the first partition the same way.

Every other partition's window is its business day, as before.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd

#: where the first partition's window opens: before any record a CRM or ERP can hold, and an hour
#: after the epoch, so that the extractors' look-back (an hour before a window) stays at or after it
BEGINNING = dt.datetime(1970, 1, 1, 1, tzinfo=dt.timezone.utc)

Window = tuple[str, dt.datetime, dt.datetime]


def windows_with_history(windows: list[Window], first_day: str) -> list[Window]:
    """The run's (day, start, end) windows, the first partition's opened to BEGINNING."""
    return [(day, BEGINNING if day == first_day else start, end) for day, start, end in windows]


def opens_history(windows: list[Window]) -> bool:
    return bool(windows) and windows[0][1] <= BEGINNING


def on_or_after(rows: pd.DataFrame, first_day: str) -> pd.DataFrame:
    """Rows whose business day (`_partition`) is before the first day, moved to the first day."""
    if rows.empty or "_partition" not in rows:
        return rows
    early = rows["_partition"] < first_day
    if not early.any():
        return rows
    rows = rows.copy()
    rows.loc[early, "_partition"] = first_day
    return rows


def export_days_before(landing_dir: Path, first_day: str) -> list[str]:
    """The export folders dated before the first day, oldest first (folders named by date only)."""
    root = Path(landing_dir) / "exports"
    if not root.is_dir():
        return []
    days = []
    for p in root.iterdir():
        try:
            day = dt.date.fromisoformat(p.name).isoformat()
        except ValueError:
            continue
        if p.is_dir() and day == p.name and day < first_day:
            days.append(day)
    return sorted(days)


def export_folders(landing_dir: Path, day: str, first_day: str | None) -> list[str]:
    """The export folders a partition loads: its own, and for the first partition every folder
    dated before it too (oldest first, its own last)."""
    return [*export_days_before(landing_dir, first_day), day] if first_day and day == first_day else [day]


def exports_as_one(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of several days' export files of one table, landed as one day: a row that an
    earlier file already listed is the same version, not a copy (as if each file had been loaded
    on its own day); a row a file lists twice stays two copies (raw_store._upsert)."""
    nonempty = [f for f in frames if len(f)]
    if len(nonempty) <= 1:   # one file (every day but the first): as it is
        return nonempty[0] if nonempty else frames[0]
    frames = nonempty
    cols = list(dict.fromkeys(c for f in frames for c in f.columns))
    both = pd.concat([f.reindex(columns=cols) for f in frames], ignore_index=True).astype(object)
    text = both.where(both.notna(), None).astype(str)
    file_no = [i for i, f in enumerate(frames) for _ in range(len(f))]
    # a row is (content, its n-th copy within its own file); kept from the first file that has it
    nth = text.assign(_file=file_no).groupby([*cols, "_file"], dropna=False, sort=False).cumcount()
    return both[~text.assign(_nth=nth).duplicated().to_numpy()].reset_index(drop=True)


def latest_across_exports(frames: list[pd.DataFrame], key: str) -> pd.DataFrame:
    """What a day's export is to source_vs_warehouse, for several days' files read as one (the first
    partition's): a record that more than one file lists, by its latest version (the later
    modification; between equal ones, the later file), as raw's latest version of it in the
    partition; every other row as its file lists it."""
    tagged = [f.assign(_file=i) for i, f in enumerate(frames) if len(f)]
    if len(tagged) <= 1:
        return exports_as_one(frames)
    both = pd.concat(tagged, ignore_index=True)
    several = both.groupby(key, dropna=False)["_file"].transform("nunique") > 1
    latest = (both[several].assign(_at=pd.to_datetime(both.loc[several, "updated_at"], utc=True, format="ISO8601"))
              .sort_values(["_at", "_file"], na_position="first").groupby(key, dropna=False).tail(1))
    return pd.concat([both[~several], latest.drop(columns="_at")], ignore_index=True).drop(columns="_file")
