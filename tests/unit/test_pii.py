"""PII masking: the column-wise masking of quarantine payloads gives exactly the per-record
masking, on values built to break it (unicode spaces, several @, line breaks, empty strings)."""
from __future__ import annotations

import json
import random

import pandas as pd

from trueup.quality.pii import mask_frame, mask_record
from trueup.quality.store import _masked_payloads

PIECES = ["a", "B", "@", " ", "\xa0", "é", "7", "-", "\n", "/", ".", "x@y.z", "ü@", "+", "(", ")", "\u3000", ""]
COLUMNS = ["email", "phone", "firstname", "contact_name", "notes", "amount"]


def _rows(n: int, seed: int = 1) -> list[dict]:
    rnd = random.Random(seed)

    def value():
        return None if rnd.random() < 0.1 else "".join(rnd.choice(PIECES) for _ in range(rnd.randint(0, 8)))

    return [{c: value() for c in COLUMNS} for _ in range(n)]


def test_mask_frame_equals_mask_record():
    rows = _rows(5000)
    frame = pd.DataFrame({c: pd.Series([r[c] for r in rows], dtype="str") for c in COLUMNS})
    got = mask_frame(frame, ("notes_secret",)).astype(object)
    got = got.where(got.notna(), None).to_dict("records")
    expected = [mask_record(r, ("notes_secret",)) for r in rows]
    assert got == expected
    # the email column really is masked, not passed through
    assert any(r["email"] and "***@" in r["email"] for r in got)


def test_payloads_are_one_json_document_per_row():
    frame = pd.DataFrame({"email": ["ann@example.com", None], "notes": ["line\nbreak\u2028 bob@example.org", "x/y"],
                          "issued": pd.to_datetime(["2026-01-02", None])})
    payloads = _masked_payloads(frame, ())
    assert [json.loads(p) for p in payloads] == [
        {"email": "a***@example.com", "notes": "line\nbreak\u2028 b***@example.org", "issued": "2026-01-02"},
        {"email": None, "notes": "x/y", "issued": None}]
    assert "ann@" not in "".join(payloads) and "bob@" not in "".join(payloads)
