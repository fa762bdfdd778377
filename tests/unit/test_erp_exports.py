"""ERP nightly exports: the sandbox writer and the platform verifier/reader."""
from __future__ import annotations

import csv
import hashlib
import json
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from trueup.connectors.erp_exports import ExportCheck, check_export, list_exports, read_export_file
from trueup.connectors.erp_schema import (
    create_erp_schema,
    customers,
    invoices as t_invoices,
    make_erp_engine,
    payments as t_payments,
    sales_orders,
)
from trueup.sandbox.erp.exports import INVOICE_COLUMNS, PAYMENT_COLUMNS, export_rows_from_db, write_export

DAY = date(2026, 11, 24)
TS = datetime(2026, 11, 24, 9, 15, 0, 123456)
TRICKY = ['plain', 'comma, inside', 'quote " inside', 'new\nline', 'crlf\r\nline', 'ünïcödé €', '', ' padded ']


def _invoices(n: int = 8) -> pd.DataFrame:
    return pd.DataFrame({
        "invoice_number": [f"INV-{i:05d}" for i in range(n)],
        "order_number": [f"SO-{i:05d}" for i in range(n)],
        "customer_number": [f"C{i % 3}" for i in range(n)],
        "issue_date": [DAY - timedelta(days=i) for i in range(n)],
        "due_date": [DAY + timedelta(days=30 - i) for i in range(n)],
        "currency": ["EUR"] * n,
        "amount": [Decimal("1234.5"), 0.1 + 0.2, "7", 12, Decimal("0.00"), 2.675, Decimal("9999999999999999.99"),
                   Decimal("10.10")][:n],
        "status": ["open", "paid", "void", "open", "open", "paid", "open", "void"][:n],
        "created_at": [TS + timedelta(minutes=i) for i in range(n)],
        "updated_at": [TS + timedelta(hours=i) for i in range(n)],
        "note": TRICKY[:n],  # an extra column: kept, after the contract columns
    })


def _payments(n: int = 3) -> pd.DataFrame:
    aware = datetime(2026, 11, 24, 10, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
    return pd.DataFrame({
        "payment_id": [f"PAY-{i}" for i in range(n)],
        "invoice_number": [f"INV-{i:05d}" for i in range(n)],
        "amount": [Decimal("1234.50"), Decimal("0.30"), Decimal("7.00")][:n],
        "currency": ["EUR"] * n,
        "received_at": [aware + timedelta(seconds=i) for i in range(n)],
        "method": ["wire", "card", "ach"][:n],
        "created_at": [TS] * n,
        "updated_at": [TS] * n,
    })


@pytest.fixture
def export(tmp_path) -> Path:
    return write_export(tmp_path, DAY, _invoices(), _payments(), generated_at=datetime(2026, 11, 25, 1, 0, 3))


def _rewrite_manifest(folder: Path, fn) -> None:
    p = folder / "manifest.json"
    m = json.loads(p.read_text())
    fn(m)
    p.write_text(json.dumps(m))


# -- writer + happy path -------------------------------------------------------------------
def test_written_export_verifies(export, tmp_path):
    assert export == tmp_path / "exports" / "2026-11-24"
    assert sorted(p.name for p in export.iterdir()) == ["invoices.csv", "manifest.json", "payments.csv"]
    chk = check_export(export)
    assert isinstance(chk, ExportCheck)
    assert chk.ok, chk.reason
    assert chk.reason is None and chk.export_date == DAY and chk.folder == export
    assert chk.rows == {"invoices.csv": 8, "payments.csv": 3}
    assert chk.files == {"invoices.csv": export / "invoices.csv", "payments.csv": export / "payments.csv"}
    m = chk.manifest
    assert m["export_date"] == "2026-11-24" and m["generated_at"] == "2026-11-25T01:00:03Z"
    assert [f["name"] for f in m["files"]] == ["invoices.csv", "payments.csv"]
    for f in m["files"]:
        assert f["sha256"] == hashlib.sha256((export / f["name"]).read_bytes()).hexdigest()


def test_read_back_gives_exactly_the_rows(export):
    inv = read_export_file(export / "invoices.csv")
    assert list(inv.columns) == INVOICE_COLUMNS + ["note"]
    assert len(inv) == 8
    assert all(pd.api.types.is_string_dtype(inv[c]) for c in inv.columns)
    assert inv["note"].tolist() == TRICKY  # commas, quotes, newlines, CRLF, unicode, empty survive
    assert inv["amount"].tolist() == ["1234.50", "0.30", "7.00", "12.00", "0.00", "2.68",
                                      "9999999999999999.99", "10.10"]
    assert inv["issue_date"].tolist()[:2] == ["2026-11-24", "2026-11-23"]
    assert inv["created_at"].tolist()[:2] == ["2026-11-24T09:15:00.123456Z", "2026-11-24T09:16:00.123456Z"]
    assert inv["invoice_number"].tolist() == [f"INV-{i:05d}" for i in range(8)]

    pay = read_export_file(export / "payments.csv")
    assert list(pay.columns) == PAYMENT_COLUMNS
    # aware timestamps are converted to UTC
    assert pay["received_at"].tolist() == ["2026-11-24T15:00:00.000000Z", "2026-11-24T15:00:01.000000Z",
                                           "2026-11-24T15:00:02.000000Z"]
    assert pay["amount"].tolist() == ["1234.50", "0.30", "7.00"]


def test_csv_is_rfc4180_quote_minimal(export):
    raw = (export / "invoices.csv").read_bytes().decode("utf-8")
    assert raw.startswith(",".join(INVOICE_COLUMNS) + ",note\r\n")
    assert '"comma, inside"' in raw and '"quote "" inside"' in raw and '"new\nline"' in raw
    assert ",plain\r\n" in raw  # unquoted when not needed
    with open(export / "invoices.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert len(rows) == 9  # header + 8 records, although the file has more physical lines
    assert raw.count("\n") > 9


def test_empty_export_verifies(tmp_path):
    folder = write_export(tmp_path, DAY, _invoices(0), _payments(0))
    chk = check_export(folder)
    assert chk.ok, chk.reason
    assert chk.rows == {"invoices.csv": 0, "payments.csv": 0}
    assert read_export_file(folder / "invoices.csv").columns.tolist()[:10] == INVOICE_COLUMNS


def test_writer_requires_contract_columns(tmp_path):
    with pytest.raises(ValueError, match="amount"):
        write_export(tmp_path, DAY, _invoices().drop(columns=["amount"]), _payments())


def test_rewrite_replaces_the_export(export, tmp_path):
    folder = write_export(tmp_path, DAY, _invoices(2), _payments(1))
    assert folder == export
    chk = check_export(folder)
    assert chk.ok, chk.reason
    assert chk.rows == {"invoices.csv": 2, "payments.csv": 1}
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp files left


def test_manifest_is_written_last(tmp_path, monkeypatch):
    """Files exist before the manifest; without the manifest the export is not ok."""
    import trueup.sandbox.erp.exports as mod

    order: list[str] = []
    real_replace = mod.os.replace

    def spy(src, dst):
        order.append(Path(dst).name)
        return real_replace(src, dst)

    monkeypatch.setattr(mod.os, "replace", spy)
    folder = write_export(tmp_path, DAY, _invoices(), _payments())
    assert order == ["invoices.csv", "payments.csv", "manifest.json"]

    (folder / "manifest.json").unlink()
    chk = check_export(folder)
    assert not chk.ok and chk.reason == "manifest.json missing"


def test_rewrite_removes_old_manifest_before_writing_files(export, tmp_path, monkeypatch):
    import trueup.sandbox.erp.exports as mod

    seen: list[bool] = []
    real_replace = mod.os.replace

    def spy(src, dst):
        seen.append((export / "manifest.json").exists())
        return real_replace(src, dst)

    monkeypatch.setattr(mod.os, "replace", spy)
    write_export(tmp_path, DAY, _invoices(1), _payments(1))
    assert seen == [False, False, False]


# -- rejections ----------------------------------------------------------------------------
def test_bad_checksum_rejected(export):
    p = export / "payments.csv"
    p.write_bytes(p.read_bytes().replace(b"1234.50", b"1234.51"))
    chk = check_export(export)
    assert not chk.ok
    assert chk.reason.startswith("payments.csv: checksum mismatch (manifest ")
    assert ", file " in chk.reason and "\n" not in chk.reason


def test_short_file_rejected_by_row_count(export):
    p = export / "payments.csv"
    with open(p, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    with open(p, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, lineterminator="\r\n").writerows(rows[:-1])  # drop one record
    new_sha = hashlib.sha256(p.read_bytes()).hexdigest()

    def fix_sha(m):  # checksum consistent, count not: the row count must catch it
        next(f for f in m["files"] if f["name"] == "payments.csv")["sha256"] = new_sha

    _rewrite_manifest(export, fix_sha)
    chk = check_export(export)
    assert not chk.ok and chk.reason == "payments.csv: 2 rows, manifest says 3"


def test_short_file_without_manifest_fix_is_rejected(export):
    p = export / "invoices.csv"
    p.write_bytes(p.read_bytes()[:-20])
    chk = check_export(export)
    assert not chk.ok and chk.reason.startswith("invoices.csv: checksum mismatch")


def test_row_count_counts_records_not_lines(export):
    def bump(m):
        next(f for f in m["files"] if f["name"] == "invoices.csv")["rows"] = 10

    _rewrite_manifest(export, bump)
    chk = check_export(export)
    assert not chk.ok and chk.reason == "invoices.csv: 8 rows, manifest says 10"


def test_missing_manifest_rejected(export):
    (export / "manifest.json").unlink()
    chk = check_export(export)
    assert not chk.ok and chk.reason == "manifest.json missing" and chk.manifest is None


def test_missing_file_rejected(export):
    (export / "invoices.csv").unlink()
    chk = check_export(export)
    assert not chk.ok and chk.reason == "invoices.csv: file missing"


@pytest.mark.parametrize("content", ["{not json", "", '["a list"]', '{"export_date": "2026-11-24", "files": 3}'])
def test_unparseable_manifest_rejected(export, content):
    (export / "manifest.json").write_text(content)
    chk = check_export(export)
    assert not chk.ok and chk.reason.startswith("manifest.json")
    assert "\n" not in chk.reason


def test_manifest_must_name_expected_files(export):
    _rewrite_manifest(export, lambda m: m.update(files=[f for f in m["files"] if f["name"] != "payments.csv"]))
    chk = check_export(export)
    assert not chk.ok and chk.reason == "manifest.json does not list payments.csv"


def test_manifest_date_must_match_folder(export):
    _rewrite_manifest(export, lambda m: m.update(export_date="2026-11-23"))
    chk = check_export(export)
    assert not chk.ok and "does not match folder" in chk.reason


def test_manifest_file_name_cannot_escape_folder(export):
    _rewrite_manifest(export, lambda m: m["files"].append({"name": "../x.csv", "rows": 0, "sha256": "0" * 64}))
    chk = check_export(export)
    assert not chk.ok and "bad name" in chk.reason


# -- listing ---------------------------------------------------------------------------------
def test_list_exports_sorted_and_checked(tmp_path):
    for d in (date(2026, 11, 25), date(2026, 11, 23), date(2026, 11, 24)):
        write_export(tmp_path, d, _invoices(), _payments())
    (tmp_path / "exports" / "2026-11-24" / "manifest.json").unlink()
    (tmp_path / "exports" / "not-a-date").mkdir()
    (tmp_path / "exports" / "2026-11-26.tmp").mkdir()
    checks = list_exports(tmp_path)
    assert [c.export_date for c in checks] == [date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25)]
    assert [c.ok for c in checks] == [True, False, True]
    assert checks[1].reason == "manifest.json missing"
    assert list_exports(tmp_path / "nowhere") == []


# -- from the database -------------------------------------------------------------------------
def test_export_rows_from_db_round_trip(tmp_path):
    eng = make_erp_engine(f"sqlite:///{tmp_path / 'erp.db'}")
    create_erp_schema(eng)
    yday = datetime(2026, 11, 23, 23, 59, 59, 999999)
    day0 = datetime(2026, 11, 24, 0, 0, 0)
    late = datetime(2026, 11, 24, 23, 59, 59, 999999)
    tomorrow = datetime(2026, 11, 25, 0, 0, 0)
    with eng.begin() as conn:
        conn.execute(customers.insert(), [dict(customer_number="C1", name="A", country="DE", currency="EUR",
                                                created_at=yday, updated_at=yday)])
        conn.execute(sales_orders.insert(), [dict(order_number="SO-1", customer_number="C1", order_date=DAY,
                                                   currency="EUR", total_amount="10", status="open",
                                                   source="manual", created_at=yday, updated_at=yday)])
        inv = dict(order_number="SO-1", customer_number="C1", issue_date=DAY, due_date=DAY, currency="EUR",
                   status="open")
        conn.execute(t_invoices.insert(), [
            dict(inv, invoice_number="INV-1", amount="1.10", created_at=yday, updated_at=yday),      # no
            dict(inv, invoice_number="INV-2", amount="2.20", created_at=day0, updated_at=day0),      # created
            dict(inv, invoice_number="INV-3", amount="9999999999999999.99", created_at=yday,
                 updated_at=late),  # updated; beyond float precision
            dict(inv, invoice_number="INV-4", amount="4.40", created_at=tomorrow, updated_at=tomorrow),  # no
        ])
        conn.execute(t_payments.insert(), [
            dict(payment_id="PAY-1", invoice_number="INV-2", amount="2.20", currency="EUR", received_at=day0,
                 method="wire", created_at=day0, updated_at=day0),
            dict(payment_id="PAY-2", invoice_number="INV-1", amount="1.10", currency="EUR", received_at=yday,
                 method="card", created_at=yday, updated_at=yday),
        ])
    inv_df, pay_df = export_rows_from_db(eng, DAY)
    assert inv_df["invoice_number"].tolist() == ["INV-2", "INV-3"]
    assert pay_df["payment_id"].tolist() == ["PAY-1"]
    assert inv_df["amount"].tolist() == [Decimal("2.20"), Decimal("9999999999999999.99")]  # no float coercion
    folder = write_export(tmp_path, DAY, inv_df, pay_df)
    chk = check_export(folder)
    assert chk.ok, chk.reason
    back = read_export_file(folder / "invoices.csv")
    assert list(back.columns) == INVOICE_COLUMNS
    assert back["amount"].tolist() == ["2.20", "9999999999999999.99"]
    assert back["updated_at"].tolist() == ["2026-11-24T00:00:00.000000Z", "2026-11-24T23:59:59.999999Z"]
    assert back["issue_date"].tolist() == ["2026-11-24", "2026-11-24"]
    eng.dispose()


@pytest.mark.postgres
def test_export_rows_from_db_postgres(pg_url, tmp_path):
    eng = make_erp_engine(pg_url)
    create_erp_schema(eng)
    with eng.begin() as conn:
        conn.execute(customers.insert(), [dict(customer_number="C1", name="A", country="DE", currency="EUR",
                                                created_at=TS, updated_at=TS)])
        conn.execute(sales_orders.insert(), [dict(order_number="SO-1", customer_number="C1", order_date=DAY,
                                                   currency="EUR", total_amount="10", status="open",
                                                   source="manual", created_at=TS, updated_at=TS)])
        conn.execute(t_invoices.insert(), [dict(invoice_number="INV-1", order_number="SO-1", customer_number="C1",
                                                 issue_date=DAY, due_date=DAY, currency="EUR", amount="0.30",
                                                 status="open", created_at=TS, updated_at=TS)])
    inv_df, pay_df = export_rows_from_db(eng, DAY)
    folder = write_export(tmp_path, DAY, inv_df, pay_df)
    assert check_export(folder).ok
    back = read_export_file(folder / "invoices.csv")
    assert back.loc[0, "amount"] == "0.30" and back.loc[0, "created_at"] == "2026-11-24T09:15:00.123456Z"
    assert len(read_export_file(folder / "payments.csv")) == 0
    eng.dispose()


def test_writer_rejects_unformattable_amount(tmp_path):
    bad = _invoices()
    bad["amount"] = bad["amount"].astype(object)
    bad.loc[0, "amount"] = "12,50"
    with pytest.raises(ValueError, match="amount"):
        write_export(tmp_path, DAY, bad, _payments())
    assert not (tmp_path / "exports" / "2026-11-24" / "manifest.json").exists()


def test_non_strict_writer_lets_a_drifted_frame_through(tmp_path):
    """strict=False (the generator's schema-drift simulation): written as-is, still verifiable."""
    drifted = _invoices().rename(columns={"amount": "amount_eur"})
    folder = write_export(tmp_path, DAY, drifted, _payments(), strict=False)
    chk = check_export(folder)
    assert chk.ok, chk.reason
    cols = read_export_file(folder / "invoices.csv").columns.tolist()
    assert "amount" not in cols and "amount_eur" in cols
