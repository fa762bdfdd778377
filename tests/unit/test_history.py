"""The initial load's pieces (assets/ingest/history.py): the first partition's window, the
business day of older versions, and several days' export files read as one."""
from __future__ import annotations

import datetime as dt

import pandas as pd

from trueup.assets.ingest.history import (BEGINNING, export_days_before, export_folders, exports_as_one,
                                          latest_across_exports,
                                          on_or_after, opens_history, windows_with_history)

START = dt.datetime(2026, 9, 1, tzinfo=dt.timezone.utc)
WINDOWS = [(f"2026-09-0{i + 1}", START + dt.timedelta(days=i), START + dt.timedelta(days=i + 1)) for i in range(3)]


def test_only_the_first_partitions_window_opens_to_the_beginning():
    opened = windows_with_history(WINDOWS, "2026-09-01")
    assert opened[0] == ("2026-09-01", BEGINNING, WINDOWS[0][2]) and opened[1:] == WINDOWS[1:]
    assert opens_history(opened) and not opens_history(WINDOWS)
    assert windows_with_history(WINDOWS[1:], "2026-09-01") == WINDOWS[1:]   # a range after the first day
    # the extractors read an hour before a window (their look-back): still not before the epoch
    assert BEGINNING - dt.timedelta(hours=1) >= dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def test_older_versions_land_on_the_first_day_and_the_others_on_their_own():
    rows = pd.DataFrame({"id": ["1", "2", "3"], "_partition": ["2025-01-31", "2026-09-01", "2026-09-02"]})
    assert on_or_after(rows, "2026-09-01")["_partition"].tolist() == ["2026-09-01", "2026-09-01", "2026-09-02"]
    assert on_or_after(rows.iloc[1:], "2026-09-01") is not None
    assert rows["_partition"].tolist()[0] == "2025-01-31"   # the caller's frame is left as it was


def test_export_folders_before_the_first_day_oldest_first(tmp_path):
    for name in ("2026-08-30", "2026-08-29", "2026-09-01", "2026-09-02", "2026-08-31.tmp", "notes", "20260828"):
        (tmp_path / "exports" / name).mkdir(parents=True)
    (tmp_path / "exports" / "2026-08-28").write_text("a file, not an export folder")
    assert export_days_before(tmp_path, "2026-09-01") == ["2026-08-29", "2026-08-30"]
    assert export_days_before(tmp_path / "nowhere", "2026-09-01") == []
    assert export_folders(tmp_path, "2026-09-01", "2026-09-01") == ["2026-08-29", "2026-08-30", "2026-09-01"]
    assert export_folders(tmp_path, "2026-09-02", "2026-09-01") == ["2026-09-02"]


def test_several_files_as_one_day_keep_a_files_own_copies_only():
    day1 = pd.DataFrame({"k": ["1", "2"], "v": ["a", "b"]})
    day2 = pd.DataFrame({"k": ["1", "1", "3"], "v": ["a", "a", None]})
    one = exports_as_one([day1, day2])
    # ("1", "a") once from day 1, and day 2's second copy of it: as loading each file on its own day
    assert sorted(map(tuple, one.fillna("-").to_numpy().tolist())) == [("1", "a"), ("1", "a"), ("2", "b"), ("3", "-")]
    assert exports_as_one([day1]) is day1
    assert list(exports_as_one([day1.iloc[:0], day1.iloc[:0]]).columns) == ["k", "v"]


def test_a_record_several_files_list_is_compared_by_its_latest_version():
    day1 = pd.DataFrame({"k": ["1", "2"], "status": ["open", "open"], "updated_at": ["2026-08-01T10:00:00Z"] * 2})
    day2 = pd.DataFrame({"k": ["1", "3"], "status": ["paid", "open"], "updated_at": ["2026-08-05T10:00:00Z"] * 2})
    got = latest_across_exports([day1, day2], "k").sort_values("k")
    assert got[["k", "status"]].to_numpy().tolist() == [["1", "paid"], ["2", "open"], ["3", "open"]]
    assert list(got.columns) == ["k", "status", "updated_at"]
