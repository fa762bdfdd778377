"""A CRM walk's rows are kept as frames of a few thousand rows while the walk goes on (a
backfill walks a million deals): the frame they make must be exactly the frame the rows make at
once, as the lander sees it — same columns, same values, missing values missing — whatever the
chunk boundaries and however the missing values fall across chunks."""
from __future__ import annotations

import random

import pandas as pd
import pytest

from trueup.assets.ingest.crm_extract import _Records

COLUMNS = ["id", "created_at", "updated_at", "archived", "archived_at", "amount", "closedate", "dealname"]


def rows(n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        row = {"id": str(1000 + i), "created_at": "2026-09-01T10:00:00.000Z",
               "updated_at": f"2026-09-{1 + i % 28:02d}T10:00:00.000Z", "archived": rnd.choice(["true", "false"]),
               # missing everywhere in some chunks, present in others
               "archived_at": None if i < 9 else rnd.choice([None, "2026-09-30T00:00:00.000Z"]),
               "amount": rnd.choice([None, "", "12.50", "-3.00"]), "closedate": None,
               "dealname": rnd.choice(["Deal ü", "Deal, \"quoted\"", None])}
        if i % 5 == 0:
            del row["dealname"]   # a property the CRM did not send
        out.append(row)
    return out


def as_landed(df: pd.DataFrame) -> pd.DataFrame:
    """What land_versions stages: text or None."""
    df = df.astype(object)
    return df.where(df.notna(), None)


@pytest.mark.parametrize("n,chunk", [(0, 4), (3, 4), (4, 4), (23, 4), (23, 7), (50, 1)])
def test_chunked_frame_equals_the_frame_of_all_rows(n, chunk, monkeypatch):
    monkeypatch.setattr(_Records, "CHUNK_ROWS", chunk)
    data = rows(n, seed=n + chunk)
    records = _Records(COLUMNS)
    for r in data:
        records.append(r)
    got, want = records.frame(), pd.DataFrame.from_records(data, columns=COLUMNS)
    assert list(got.columns) == COLUMNS and len(got) == n
    pd.testing.assert_frame_equal(as_landed(got).reset_index(drop=True), as_landed(want), check_dtype=False)
