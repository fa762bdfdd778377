"""Writes that stay safe under changed minds, outages and concurrency (issue 18), run as a user
runs them: the sandbox CRM and ERP, `nightly_sync` through the Dagster instance, the `trueup`
command in a subprocess. What is asserted is what a person sees: rows in the ERP, values in
the CRM, ledger rows, exit codes and the one line printed."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from connectors.erp_schema import make_erp_engine
from connectors.warehouse import Warehouse
from orchestration.config import load_settings
from orchestration.runner import run_job
from sandbox.crm.store import CrmStore
from tests.world_fixtures import tiny_world  # noqa: F401 - fixture

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TRUEUP = [str(BIN / "trueup")] if (BIN / "trueup").exists() else [sys.executable, "-m", "orchestration.cli"]


def trueup(env: dict, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRUEUP_") and k != "DAGSTER_HOME"}
    return subprocess.run([*TRUEUP, *args], env={**base, **env, "DO_NOT_TRACK": "1"}, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


def ms(day: dt.date, hour: int) -> int:
    return int(dt.datetime(day.year, day.month, day.day, hour, tzinfo=dt.timezone.utc).timestamp() * 1000)


def set_deal(w, deal_id: int, day: dt.date, hour: int, **props) -> None:
    """The sales rep edits the deal in the CRM during business day `day` (at `hour`:00 UTC)."""
    store = CrmStore(w.paths.crm_db)
    rec = store.get("deals", deal_id)
    store.load_records("deals", pd.DataFrame([{"id": deal_id, "created_ms": rec["created_ms"],
                                                "updated_ms": ms(day, hour), **props}]))
    store.close()


def touch_company(w, company_id: int, day: dt.date, hour: int) -> None:
    store = CrmStore(w.paths.crm_db)
    rec = store.get("companies", company_id)
    store.load_records("companies", pd.DataFrame([{"id": company_id, "created_ms": rec["created_ms"],
                                                    "updated_ms": ms(day, hour)}]))
    store.close()


def a_won_deal(w, day: dt.date, amount: str, hour: int = 10) -> str:
    """Turn one ordinary deal of the world (valid company, no injected defect) into a deal won on
    `day` for `amount` USD; its company is touched the same day so one night's run sees both."""
    from sandbox.generator.world import read_defects

    bad = {str(d["business_key"]) for d in read_defects(w.paths)}
    store = CrmStore(w.paths.crm_db)
    deals = store.all_records("deals", archived=False)
    companies = store.all_records("companies", archived=False)
    store.close()
    good_companies = set(companies["id"].astype(str)) - bad
    pick = deals[~deals["id"].astype(str).isin(bad) & deals["company_id"].notna()
                 & deals["company_id"].astype("Int64").astype(str).isin(good_companies)
                 & (deals["dealstage"] != "closedwon")].iloc[0]
    deal_id, company_id = int(pick["id"]), int(pick["company_id"])
    touch_company(w, company_id, day, hour - 1)
    set_deal(w, deal_id, day, hour, dealstage="closedwon", closedate=f"{day}T09:00:00.000Z", amount=amount,
             deal_currency_code="USD")
    return str(deal_id)


def erp_orders(w) -> pd.DataFrame:
    engine = make_erp_engine(w.paths.erp_url)
    with engine.connect() as conn:
        df = pd.read_sql(sa.text("SELECT order_number, crm_deal_id, total_amount, currency, customer_number, source "
                                 "FROM sales_orders"), conn)
    engine.dispose()
    return df


def ledger(key: str) -> pd.DataFrame:
    wh = Warehouse(load_settings().warehouse_url)
    try:
        df = wh.query_df("SELECT write_id, state, payload, payload_hash, approved_by, superseded_by, created_at "
                         "FROM ops.sor_writes WHERE idempotency_key = :k ORDER BY created_at", {"k": key})
    finally:
        wh.dispose()
    return df.assign(amount=[json.loads(p)["total_amount"] for p in df["payload"]])


def nightly(day: dt.date):
    outcome = run_job(load_settings(), "nightly_sync", day)
    assert outcome.success, outcome.error
    return outcome


# ---------------------------------------------------------------------------------- approvals
def test_an_approval_binds_to_the_payload_approved_not_to_the_deal(tiny_world):
    """Approve a USD 300,000 order, raise the deal to USD 9,000,000 in the CRM: the next night
    posts nothing; the 9M payload waits for its own approval and the old approval is superseded."""
    w = tiny_world
    day = w.days()[-1]
    deal = a_won_deal(w, day, "300000.00")
    key = f"erp-order:crm-deal:{deal}"
    nightly(day)
    rows = ledger(key)
    assert rows["state"].tolist() == ["awaiting_approval"] and rows["amount"].tolist() == ["300000.00"]

    r = trueup(w.env, "approve", key, "--actor", "cfo@example")
    assert r.returncode == 0, r.stderr
    assert "300000.00 USD" in r.stdout

    set_deal(w, int(deal), day, 13, amount="9000000.00")   # the rep changes the deal after the approval
    nightly(day)
    assert deal not in set(erp_orders(w)["crm_deal_id"].dropna())   # nothing posted without an approval
    rows = ledger(key).set_index("amount")
    assert rows.loc["300000.00", "state"] == "superseded"
    assert rows.loc["300000.00", "approved_by"] == "cfo@example"        # the old decision stays on record
    assert rows.loc["300000.00", "superseded_by"] == rows.loc["9000000.00", "write_id"]
    assert rows.loc["9000000.00", "state"] == "awaiting_approval"
    assert pd.isna(rows.loc["9000000.00", "approved_by"])

    # the 9M order needs and gets its own approval; it is posted once, with its approver
    r = trueup(w.env, "approve", key, "--actor", "ceo@example")
    assert r.returncode == 0 and "9000000.00 USD" in r.stdout, r.stderr
    nightly(day)
    orders = erp_orders(w)
    mine = orders[orders["crm_deal_id"] == deal]
    assert mine["total_amount"].astype(float).tolist() == [9_000_000.0]
    rows = ledger(key).set_index("amount")
    assert rows.loc["9000000.00", "state"] == "confirmed" and rows.loc["9000000.00", "approved_by"] == "ceo@example"
    assert rows.loc["300000.00", "state"] == "superseded"
