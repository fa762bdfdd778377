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

from trueup.connectors.erp_schema import make_erp_engine
from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from trueup.orchestration.runner import run_job
from trueup.sandbox.crm.store import CrmStore
from tests.fixtures_crm import crm_sandbox  # noqa: F401 - fixture
from tests.world_fixtures import tiny_world  # noqa: F401 - fixture

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TRUEUP = [str(BIN / "trueup")] if (BIN / "trueup").exists() else [sys.executable, "-m", "trueup.orchestration.cli"]


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
    from trueup.sandbox.generator.world import read_defects

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
        df = wh.query_df("SELECT * FROM ops.sor_writes WHERE idempotency_key = :k ORDER BY created_at", {"k": key})
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
    day, next_day = w.days()[1], w.days()[2]    # go-live is the second day
    deal = a_won_deal(w, day, "300000.00")
    key = f"erp-order:crm-deal:{deal}"
    nightly(day)
    rows = ledger(key)
    assert rows["state"].tolist() == ["awaiting_approval"] and rows["amount"].tolist() == ["300000.00"]

    r = trueup(w.env, "approve", key, "--actor", "cfo@example")
    assert r.returncode == 0, r.stderr

    set_deal(w, int(deal), next_day, 13, amount="9000000.00")   # the rep raises the deal the next day
    nightly(next_day)
    assert deal not in set(erp_orders(w)["crm_deal_id"].dropna())   # nothing posted without an approval
    assert "300000.00 USD" in r.stdout   # the approver was shown what they approved
    rows = ledger(key).set_index("amount")
    assert rows.loc["300000.00", "state"] == "superseded"
    assert rows.loc["300000.00", "approved_by"] == "cfo@example"        # the old decision stays on record
    assert rows.loc["300000.00", "superseded_by"] == rows.loc["9000000.00", "write_id"]
    assert rows.loc["9000000.00", "state"] == "awaiting_approval"
    assert pd.isna(rows.loc["9000000.00", "approved_by"])

    # the 9M order needs and gets its own approval; it is posted once, with its approver
    r = trueup(w.env, "approve", key, "--actor", "ceo@example")
    assert r.returncode == 0 and "9000000.00 USD" in r.stdout, r.stderr
    nightly(next_day)
    orders = erp_orders(w)
    mine = orders[orders["crm_deal_id"] == deal]
    assert mine["total_amount"].astype(float).tolist() == [9_000_000.0]
    rows = ledger(key).set_index("amount")
    assert rows.loc["9000000.00", "state"] == "confirmed" and rows.loc["9000000.00", "approved_by"] == "ceo@example"
    assert rows.loc["300000.00", "state"] == "superseded"


# ---------------------------------------------------------------------- CRM outages, unknowns
DRY_RUN = {"ops": {"publish__erp_orders": {"config": {"dry_run": True}}}}


def publish_once(w, run_id: str, **kw):
    """One publishing pass as the asset runs it, with a real client for the sandbox CRM (two
    retries per call, so an outage is given up on in seconds rather than the default minute)."""
    from trueup.assets.publish.run import publish
    from trueup.connectors.hubspot import HubSpotClient

    s = load_settings()
    wh = Warehouse(s.warehouse_url)
    client = HubSpotClient(s.crm_base_url, w.token, max_retries=2, backoff_base=0.05, timeout=5)
    try:
        return publish(wh, make_erp_engine(s.erp_url), client, home=s.home, through=w.days()[-1],
                       publish_from=s.publish_from, reporting_currency="USD", run_id=run_id, **kw)
    finally:
        client.close()
        wh.dispose()


def crm_values(w, obj: str, ids, prop: str) -> dict[str, str | None]:
    store = CrmStore(w.paths.crm_db)
    try:
        return {str(i): (store.get(obj, int(i)) or {}).get("properties", {}).get(prop) for i in ids}
    finally:
        store.close()


def writebacks() -> pd.DataFrame:
    wh = Warehouse(load_settings().warehouse_url)
    try:
        return wh.query_df("SELECT * FROM ops.sor_writes WHERE target_system = 'crm'")
    finally:
        wh.dispose()


@pytest.fixture
def won_deals(tiny_world):
    """Three deals won on the last day, ingested and gated; nothing published yet."""
    w = tiny_world
    day = w.days()[-1]
    deals = []
    for i in range(3):
        deals.append(a_won_deal(w, day, f"{1000 + i}.00", hour=10 + i))
    outcome = run_job(load_settings(), "nightly_sync", day, run_config=DRY_RUN)
    assert outcome.success, outcome.error
    return w, deals


def test_a_crm_outage_during_publish_loses_no_write_back(won_deals):
    """The CRM is down while orders are posted: the ERP gets its orders, the write-backs wait
    (retried by later runs, attempts counted, alerted when failing too long), and once the CRM
    is back every deal gets its ERP order number exactly once."""
    from trueup.sandbox.crm.server import SandboxServer
    from tests.fixtures_crm import QUIET_KNOBS

    w, deals = won_deals
    port = w.server.port
    w.server.stop()   # the CRM goes away
    s = publish_once(w, "outage-1", alert_after=dt.timedelta(0))
    orders = erp_orders(w)
    posted = orders[orders["crm_deal_id"].isin(deals)]
    assert sorted(posted["crm_deal_id"]) == sorted(deals)          # the ERP side is not held back
    backs = writebacks()
    deal_backs = backs[backs.target_object == "deals"]
    assert len(deal_backs) == 3 and set(deal_backs["state"]) == {"planned"}, deal_backs[["state", "error"]]
    assert deal_backs["failing_since"].notna().all() and (deal_backs["attempts"] >= 0).all()
    assert "rejected" not in set(backs["state"])                      # an outage is no refusal
    assert s.retry_later == len(backs) and {f["idempotency_key"] for f in s.failing_too_long} == \
        set(backs["idempotency_key"])                                 # alerted once, all of them

    s = publish_once(w, "outage-2", alert_after=dt.timedelta(0))     # still down: nothing lost, no new alert
    assert s.failing_too_long == [] and set(writebacks()["state"]) == {"planned"}
    assert (writebacks()["attempts"] >= 2).all()                      # attempts counted per try

    w.server = SandboxServer(w.paths.crm_db, w.token, port=port, knobs=dict(QUIET_KNOBS)).start()   # back
    publish_once(w, "after-outage")
    numbers = dict(zip(posted["crm_deal_id"], posted["order_number"]))
    assert crm_values(w, "deals", deals, "erp_order_number") == numbers
    backs = writebacks()
    assert set(backs["state"]) == {"confirmed"} and backs["failing_since"].isna().all()
    assert backs["idempotency_key"].is_unique                         # one write per write-back
    w.server.faults.reset_stats()
    publish_once(w, "again")
    assert "batch_update" not in w.server.stats()["requests_by_kind"]   # nothing is sent twice


def test_writes_a_2xx_answer_does_not_acknowledge_are_unknown_and_read_back(won_deals):
    w, deals = won_deals
    w.server.set_knobs(unacknowledged_rate=1.0)   # every batch answer leaves one applied input out
    s = publish_once(w, "silent-1")
    backs = writebacks()
    unknown = backs[backs.state == "unknown"]
    n_batches = backs["target_object"].nunique()
    assert len(unknown) >= 1 and s.unknown == len(unknown), backs[["target_object", "state"]]
    assert len(unknown) <= n_batches                  # only what the answers left out
    w.server.set_knobs(unacknowledged_rate=0.0)
    w.server.faults.reset_stats()
    s = publish_once(w, "silent-2")
    assert set(writebacks()["state"]) == {"confirmed"} and s.resolved_from_earlier_runs >= len(unknown)
    assert "batch_update" not in w.server.stats()["requests_by_kind"]   # resolved by reading, not resending


# ---------------------------------------------------------------------------------- concurrency
@pytest.mark.parametrize("backend", ["duckdb", "postgresql"])
def test_five_concurrent_nightly_runs_of_one_day_one_runs(backend, tmp_path, monkeypatch, request):
    """5 × `trueup nightly --date D` at once: exactly one runs; the others exit non-zero at once
    with one line naming the run that holds the day; nothing is written twice."""
    from tests.world_fixtures import TINY_WORLD, make_world

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    w = make_world(tmp_path / "home", cfg=TINY_WORLD, warehouse_url=url)
    try:
        for k, v in w.env.items():
            monkeypatch.setenv(k, v)
        day = w.days()[-1]
        deals = [a_won_deal(w, day, f"{2000 + i}.00", hour=10 + i) for i in range(2)]
        base = {k: v for k, v in os.environ.items() if not k.startswith("TRUEUP_") and k != "DAGSTER_HOME"}
        env = {**base, **w.env, "DO_NOT_TRACK": "1"}
        procs = [subprocess.Popen([*TRUEUP, "nightly", "--date", day.isoformat()], env=env, cwd=ROOT,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(5)]
        results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
        ok = [r for r in results if r[0] == 0]
        refused = [r for r in results if r[0] != 0]
        assert len(ok) == 1, [(c, e[-500:]) for c, _, e in results]
        import re

        run_id = re.search(r"^run ([0-9a-f-]{36}) \(", ok[0][1], re.M).group(1)   # "run <id> (<day>): success"
        for code, out, err in refused:
            lines = err.strip().splitlines()
            assert len(lines) == 1 and "Traceback" not in err + out, err
            assert f"business day {day}" in lines[0] and run_id in lines[0] and " since " in lines[0], lines[0]
        orders = erp_orders(w)
        assert sorted(orders.loc[orders["crm_deal_id"].isin(deals), "crm_deal_id"]) == sorted(deals)
        wh = Warehouse(load_settings().warehouse_url)
        try:
            runs = wh.query_df("SELECT DISTINCT run_id FROM ops.sync_runs")
            dup = wh.query_df("SELECT idempotency_key, count(*) AS n FROM ops.sor_writes WHERE state = 'confirmed' "
                              "GROUP BY idempotency_key HAVING count(*) > 1")
        finally:
            wh.dispose()
        assert runs["run_id"].tolist() == [run_id] and dup.empty   # only the one run wrote anything
        mine = orders[orders["crm_deal_id"].isin(deals)]
        assert crm_values(w, "deals", deals, "erp_order_number") == dict(zip(mine["crm_deal_id"], mine["order_number"]))
    finally:
        w.server.stop()


# ------------------------------------------------------------------------------ one-line errors
def assert_one_line(r: subprocess.CompletedProcess, *needles: str) -> str:
    assert r.returncode != 0, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, f"{len(lines)} lines on stderr: {r.stderr[:2000]}"
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("how", ["real_crm_url", "sandbox"])
def test_a_wrong_token_is_one_line_in_seconds(crm_sandbox, tmp_path, how):
    import time

    env = {"TRUEUP_HOME": str(tmp_path / "home"), "TRUEUP_CRM_TOKEN": "not-the-token"}
    if how == "real_crm_url":
        env["TRUEUP_CRM_BASE_URL"] = crm_sandbox.base_url
    else:   # the sandbox answering 401 is a bad token, not "sandbox not running"
        env["TRUEUP_SANDBOX_PORT"] = crm_sandbox.base_url.rsplit(":", 1)[1]
    t0 = time.monotonic()
    r = trueup(env, "nightly", "--date", "2026-09-03", timeout=60)
    line = assert_one_line(r, "rejected the token (401)", "TRUEUP_CRM_TOKEN")
    assert "not-the-token" not in line and "not running" not in line
    assert time.monotonic() - t0 < 20


def test_an_unreachable_crm_fails_in_seconds_with_one_line(tmp_path):
    import time

    url = f"http://127.0.0.1:{free_port()}"   # nothing listens there
    t0 = time.monotonic()
    r = trueup({"TRUEUP_HOME": str(tmp_path / "home"), "TRUEUP_CRM_BASE_URL": url, "TRUEUP_CRM_TOKEN": "x" * 20},
               "nightly", "--date", "2026-09-03", timeout=100)
    assert_one_line(r, url, "not reachable")
    assert time.monotonic() - t0 < 20


@pytest.mark.parametrize("url", ["http://crm.example.com", "http://10.1.2.3:8080"])
def test_a_plain_http_crm_url_off_this_machine_is_refused(tmp_path, url):
    r = trueup({"TRUEUP_HOME": str(tmp_path / "home"), "TRUEUP_CRM_BASE_URL": url, "TRUEUP_CRM_TOKEN": "secret-123456"},
               "nightly", "--date", "2026-09-03", timeout=60)
    line = assert_one_line(r, "TRUEUP_CRM_BASE_URL", "https://")
    assert "secret-123456" not in line


def test_a_failed_run_is_one_line_with_its_run_id_and_log(tiny_world):
    """A tampered export stops the night: one line with the reason, the run id and the log file;
    the log (private) holds the whole story, stack trace included."""
    import re

    w = tiny_world
    day = w.days()[-1]
    export = w.paths.landing_dir / "exports" / day.isoformat() / "invoices.csv"
    export.write_text(export.read_text() + "INV-999999,SO-1,C1,2026-09-03,2026-10-03,USD,1.00,open,x,y\n")
    r = trueup(w.env, "nightly", "--date", day.isoformat())
    line = assert_one_line(r)
    m = re.search(r"\(run ([0-9a-f-]{36}); full log: (\S+)\)$", line)
    assert m, line
    log = Path(m.group(2))
    assert log.is_file() and (log.stat().st_mode & 0o077) == 0 and (log.parent.stat().st_mode & 0o077) == 0
    text = log.read_text()
    assert m.group(1) in log.name and "STEP_FAILURE" in text and "File \"" in text   # the stack trace
    # the terminal showed the failed step with its reason, and that the steps after it did not run
    assert re.search(r"\] (✗|FAILED) erp_exports .*checksum mismatch", r.stdout), r.stdout
    assert re.search(r"\d+ more step\(s\) not run: a step they depend on failed", r.stdout), r.stdout


# ---------------------------------------------------------------------------------- ERP exports
def rewrite_export(folder: Path, name: str, text: str) -> None:
    """The ERP (or someone) rewrites one file and updates the manifest to match: the export verifies."""
    (folder / name).write_text(text, encoding="utf-8")
    manifest = json.loads((folder / "manifest.json").read_text())
    for f in manifest["files"]:
        if f["name"] == name:
            import hashlib

            f["sha256"] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_an_unsafe_column_name_rejects_that_export_and_the_other_days_load(tiny_world):
    w = tiny_world
    first, bad_day, last = w.days()
    folder = w.paths.landing_dir / "exports" / bad_day.isoformat()
    text = (folder / "payments.csv").read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    rewrite_export(folder, "payments.csv", header.replace("method", "Bad Col") + "\n" + rest)
    outcome = run_job(load_settings(), "nightly_sync", first, last)
    assert not outcome.success and "Bad Col" in (outcome.error or "")
    wh = Warehouse(load_settings().warehouse_url)
    try:
        loads = wh.query_df("SELECT export_date, status, reason FROM ops.export_loads")
    finally:
        wh.dispose()
    status = {str(d)[:10]: s for d, s in zip(loads["export_date"], loads["status"])}
    assert status == {first.isoformat(): "loaded", bad_day.isoformat(): "rejected", last.isoformat(): "loaded"}
    assert "unsafe column name 'Bad Col'" in loads.loc[loads.status == "rejected", "reason"].iloc[0]


def test_an_export_file_that_is_a_symbolic_link_is_rejected(tmp_path):
    from trueup.connectors.erp_exports import check_export, read_export_file

    folder = tmp_path / "exports" / "2026-09-03"
    folder.mkdir(parents=True)
    outside = tmp_path / "elsewhere.csv"
    outside.write_text("payment_id,invoice_number,amount,currency,received_at,method,created_at,updated_at\n"
                       "PAY-1,INV-1,1.00,USD,2026-09-03T00:00:00,wire,2026-09-03T00:00:00,2026-09-03T00:00:00\n")
    (folder / "invoices.csv").write_text("invoice_number,amount\nINV-1,1.00\n")
    (folder / "payments.csv").symlink_to(outside)
    import hashlib

    files = [{"name": n, "rows": 1, "sha256": hashlib.sha256((folder / n).read_bytes()).hexdigest()}
             for n in ("invoices.csv", "payments.csv")]
    (folder / "manifest.json").write_text(json.dumps({"export_date": "2026-09-03", "files": files}))
    check = check_export(folder)
    assert not check.ok and "symbolic link" in check.reason
    # a regular file verifies, and what is parsed is the very bytes that were hashed
    (folder / "payments.csv").unlink()
    (folder / "payments.csv").write_bytes(outside.read_bytes())
    check = check_export(folder)
    assert check.ok, check.reason
    verified = check.data["payments.csv"]
    assert hashlib.sha256(verified).hexdigest() == files[1]["sha256"]
    (folder / "payments.csv").write_text("payment_id\nPAY-666\n")   # changed after verification
    assert read_export_file(verified)["payment_id"].tolist() == ["PAY-1"]


# ------------------------------------------------------------------------------- private state
def test_trueup_home_and_its_files_are_private(tmp_path):
    home = tmp_path / "home"
    r = trueup({"TRUEUP_HOME": str(home), "TRUEUP_SANDBOX_PORT": str(free_port())},
               "sandbox", "seed", "--days", "2", "--scale", "0.2", timeout=300)
    assert r.returncode == 0, r.stderr
    r = trueup({"TRUEUP_HOME": str(home), "TRUEUP_SANDBOX_PORT": str(free_port())}, "quarantine", "list")
    assert r.returncode == 0, r.stderr   # opens (creates) the warehouse
    seen = [home, *home.rglob("*")]
    assert any(p.name == "erp.sqlite" for p in seen) and any(p.suffix == ".duckdb" for p in seen)
    loose = [(str(p.relative_to(tmp_path)), oct(p.stat().st_mode & 0o777)) for p in seen
             if not p.is_symlink() and p.stat().st_mode & 0o077]
    assert loose == [], loose


def test_settings_never_show_a_database_password():
    from trueup.orchestration.config import load_settings

    s = load_settings({"TRUEUP_HOME": "/tmp/trueup-nowhere", "TRUEUP_CRM_TOKEN": "tok-0123456789",
                       "TRUEUP_WAREHOUSE_URL": "postgresql://etl:pg-s3cret@db.internal:5432/wh",
                       "TRUEUP_ERP_URL": "postgresql://erp:erp-s3cret@erp.internal/erp"})
    for text in (repr(s), str(s), f"{s}"):
        assert "pg-s3cret" not in text and "erp-s3cret" not in text and "tok-0123456789" not in text
        assert "postgresql://etl:***@db.internal:5432/wh" in text
    assert s.warehouse_url.endswith("pg-s3cret@db.internal:5432/wh")   # the value itself is intact


def test_the_sandbox_checks_the_token_before_reading_a_body(crm_sandbox):
    import socket

    host, port = crm_sandbox.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        # announces 1 GB and sends nothing: an unauthenticated caller gets its 401 at once
        s.sendall(b"POST /crm/v3/objects/deals/batch/update HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Authorization: Bearer wrong\r\nContent-Length: 1000000000\r\n\r\n")
        s.settimeout(5)
        head = s.recv(200)
    assert head.startswith(b"HTTP/1.1 401") or head.startswith(b"HTTP/1.0 401"), head
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/update", data=b"x" * (5 * 1024 * 1024),
                         headers={"Content-Type": "application/json"})
    assert r.status_code == 413


# ------------------------------------------------------------------------------- held writes
def a_deal_a_clerk_already_keyed(w, day: dt.date, amount: str, order_number: str, hour: int) -> str:
    """A deal won on `day` for a company the ERP knows, and a clerk's manual order for the same
    customer and amount that day without the deal id: Trueup must hold the deal's order."""
    from trueup.connectors.erp_schema import customers, sales_orders

    deal = a_won_deal(w, day, amount, hour=hour)
    store = CrmStore(w.paths.crm_db)
    company = int(store.get("deals", int(deal))["company_id"])
    name = store.get("companies", company)["properties"]["name"]
    store.close()
    at = dt.datetime(day.year, day.month, day.day, 8)
    engine = make_erp_engine(w.paths.erp_url)
    with engine.begin() as conn:   # the ERP knows the company's customer (linked), and the clerk keys the order
        if not conn.execute(sa.select(customers.c.customer_number).where(
                customers.c.crm_company_id == str(company))).first():
            conn.execute(customers.insert(), [{"customer_number": f"C1{company}", "name": name, "country": "DE",
                                               "currency": "USD", "crm_company_id": str(company),
                                               "credit_limit": "50000.00", "created_at": at, "updated_at": at}])
        conn.execute(sales_orders.insert(), [{"order_number": order_number, "customer_number": f"C1{company}",
                                              "crm_deal_id": None, "order_date": day, "currency": "USD",
                                              "total_amount": amount, "status": "open", "source": "manual",
                                              "created_at": at, "updated_at": at}])
    engine.dispose()
    return deal


def test_held_writes_are_listed_released_linked_and_undone_from_the_cli(tiny_world):
    w = tiny_world
    day = w.days()[-1]
    released = a_deal_a_clerk_already_keyed(w, day, "4321.00", "SO-7000001", hour=10)
    linked = a_deal_a_clerk_already_keyed(w, day, "5432.00", "SO-7000002", hour=12)
    nightly(day)
    r = trueup(w.env, "writes", "list")
    assert r.returncode == 0, r.stderr
    for deal, amount, order in ((released, "4321.00", "SO-7000001"), (linked, "5432.00", "SO-7000002")):
        line = next(ln for ln in r.stdout.splitlines() if f"erp-order:crm-deal:{deal}" in ln)
        assert "held" in line and f"{amount} USD" in line and "days" in line and order in line, line

    assert trueup(w.env, "writes", "release", f"erp-order:crm-deal:{released}", "--actor", "ops@x").returncode == 0
    r = trueup(w.env, "writes", "link", f"erp-order:crm-deal:{linked}", "--order", "SO-7000002", "--actor", "ops@x")
    assert r.returncode == 0, r.stderr
    r = trueup(w.env, "writes", "undo", f"erp-order:crm-deal:{linked}", "--actor", "ops@y")   # reversible
    assert r.returncode == 0 and "held again" in r.stdout, r.stderr
    assert trueup(w.env, "writes", "link", f"erp-order:crm-deal:{linked}", "--order", "SO-7000002").returncode == 0
    nightly(day)
    orders = erp_orders(w)
    assert orders.loc[orders["crm_deal_id"] == released, "source"].tolist() == ["integration"]   # sent once
    assert linked not in set(orders["crm_deal_id"].dropna())                                      # nothing sent
    rows = ledger(f"erp-order:crm-deal:{released}")
    assert rows["state"].tolist() == ["confirmed"] and rows["decided_by"].tolist() == ["ops@x"]
    rows = ledger(f"erp-order:crm-deal:{linked}")
    assert rows["state"].tolist() == ["linked"] and rows["decision"].tolist() == ["linked to SO-7000002"]
    assert rows["decided_at"].notna().all()
    r = trueup(w.env, "writes", "release", "erp-order:crm-deal:0")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no held write" in r.stderr


def test_a_crm_stopped_mid_publish_gets_every_write_back_exactly_once(won_deals):
    """The CRM stops while the write-backs are being sent (after the deals' batch reached it):
    what it took is not sent again, what it missed is sent by the next run once it is back."""
    import threading
    import time

    from trueup.sandbox.crm.server import SandboxServer
    from tests.fixtures_crm import QUIET_KNOBS

    w, deals = won_deals
    port, server = w.server.port, w.server
    server.set_knobs(latency_ms=300)   # each call takes a while: the stop lands between two batches
    server.faults.reset_stats()
    stopped = threading.Event()

    def stop_after_first_write_back():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not server.stats()["requests_by_kind"].get("batch_update"):
            time.sleep(0.01)
        server.stop()
        stopped.set()

    killer = threading.Thread(target=stop_after_first_write_back, daemon=True)
    killer.start()
    s = publish_once(w, "mid-1")
    killer.join(timeout=130)
    assert stopped.is_set()
    backs = writebacks()
    hit = backs[backs.state != "confirmed"]   # what the stop caught: unknown (in flight) or planned (not sent)
    assert "rejected" not in set(backs["state"]) and len(hit) and set(hit["state"]) <= {"unknown", "planned"}, \
        backs[["target_object", "state"]]
    assert s.unknown + s.retry_later == len(hit)
    store = CrmStore(w.paths.crm_db)
    stamped = {i: store.get("deals", int(i))["updated_ms"] for i in deals}
    taken = {i for i, v in crm_values(w, "deals", deals, "erp_order_number").items() if v}
    store.close()

    w.server = SandboxServer(w.paths.crm_db, w.token, port=port, knobs=dict(QUIET_KNOBS)).start()
    publish_once(w, "mid-2")
    publish_once(w, "mid-3")
    orders = erp_orders(w)
    mine = orders[orders["crm_deal_id"].isin(deals)]
    assert crm_values(w, "deals", deals, "erp_order_number") == dict(zip(mine["crm_deal_id"], mine["order_number"]))
    store = CrmStore(w.paths.crm_db)
    for i in taken:   # a write-back the CRM took before it stopped was not sent again
        assert store.get("deals", int(i))["updated_ms"] == stamped[i]
    store.close()
    backs = writebacks()
    assert set(backs["state"]) == {"confirmed"} and backs["idempotency_key"].is_unique
