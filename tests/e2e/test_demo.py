"""`trueup demo` as a user sees it: the story in order (baseline month, go-live backfill,
rejected export and its re-run, the morning reconciliation), a progress line for every step
of every run, and a closing summary whose numbers are the warehouse's and the ERP's.

The end-to-end test runs a small world (12 days, one backfill run after go-live); the
progress display is also tested on its own against a tiny job, as a terminal and as a pipe.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.fixtures_cli import _pid_alive, trueup

STEP_LINE = re.compile(r"^ {5}\[ ?(\d+)/(\d+)\] (✓|✗) (\S+) +(\d+\.\d)s(?:  (.+))?$")
RUN_HEAD = re.compile(r"^   run (\d+): (nightly_sync|reconcile) (\S+)(?: \.\. (\S+))? \(\d+ days?\)$")
RUN_END = re.compile(r"^   run (\d+) (success|FAILED): (\d+) of (\d+) steps(?:, (\d+) failed)?(?:, (\d+) not run)? "
                     r"in \d+\.\ds \(Dagster run ([0-9a-f]{8})\)$")


def _runs(stdout: str) -> list[dict]:
    """Each run the demo announced, with the step lines printed under it."""
    runs, cur = [], None
    for line in stdout.splitlines():
        if m := RUN_HEAD.match(line):
            cur = {"n": int(m[1]), "job": m[2], "first": m[3], "last": m[4] or m[3], "steps": [], "end": None}
            runs.append(cur)
        elif (m := STEP_LINE.match(line)) and cur is not None:
            cur["steps"].append({"i": int(m[1]), "of": int(m[2]), "ok": m[3] == "✓", "step": m[4],
                                 "reason": m[6]})
        elif (m := RUN_END.match(line)) and cur is not None:
            cur["end"] = {"ok": m[2] == "success", "done": int(m[3]), "planned": int(m[4]),
                          "failed": int(m[5] or 0), "not_run": int(m[6] or 0), "run_id": m[7]}
    return runs


def _table_value(stdout: str, label: str) -> str:
    rows = [line for line in stdout.splitlines() if line.startswith(f"  {label}  ")]
    assert len(rows) == 1, f"{label!r}: {rows}"
    return rows[0][len(label) + 2:].split()[0]


def _num(text: str) -> float:
    return float(text.replace(",", ""))


@pytest.fixture
def demo_run(env):  # noqa: F811 - the fixture imported from test_cli
    """The demo at a small size: 6 baseline days, then 6 days after go-live in one backfill run."""
    home = Path(env["TRUEUP_HOME"])
    try:
        r = trueup(env, "demo", "--seed", "5", "--days", "12", timeout=1100)
    finally:  # the demo leaves the sandbox CRM running, as `make demo` does for the UI
        pid_file = home / "sandbox" / "crm.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text())
            trueup(env, "sandbox", "down", timeout=30)
            if _pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
    return r, home


@pytest.mark.slow
def test_demo_tells_the_story_with_progress_and_a_true_summary(demo_run, monkeypatch):
    r, home = demo_run
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    out = r.stdout
    assert "Traceback" not in out and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert "\r" not in out, "no carriage-return animation when stdout is not a terminal"
    # dbt's own output is its log in the home's dbt folder, never between the progress lines;
    # whatever else a run prints goes to the demo's log file
    assert "Running with dbt=" not in out
    assert "Running with dbt=" in (home / "dbt" / "target" / "dbt.log").read_text()
    log = home / "logs" / "demo.log"
    assert log.exists()
    assert str(log) in out

    # the story, in order: 6 baseline days, go-live, the go-live days as a backfill, the morning check
    heads = [line for line in out.splitlines() if line.startswith("== ")]
    assert heads[0].startswith("== 1. The company before Trueup: 2026-09-01 .. 2026-09-06, 6 days"), heads
    assert heads[1].startswith("== 2. Trueup arrives"), heads
    assert heads[2].startswith("== 3. Go-live 2026-09-07: the nightly runs of 2026-09-07 .. 2026-09-12 as a backfill "
                               "in 1 run"), heads
    assert heads[3].startswith("== 4. 06:00 the next morning: the reconcile job"), heads
    assert heads[4] == "== Summary"
    assert "World seed 5, scale 1.0: 2026-09-01 .. 2026-09-06 (go-live 2026-09-07)" in out
    assert re.search(r"^   The company lives 2026-09-07 \.\. 2026-09-12: CRM changed \d+ companies, \d+ contacts, "
                     r"\d+ deals; clerks keyed .*; exports hold \d+ invoices, \d+ payments$", out, re.M)

    runs = _runs(out)
    assert [(x["job"], x["first"], x["last"]) for x in runs] == [
        ("nightly_sync", "2026-09-01", "2026-09-06"),
        ("nightly_sync", "2026-09-07", "2026-09-12"),   # stopped by the drifted exports
        ("nightly_sync", "2026-09-07", "2026-09-12"),   # after the ERP team re-exported them
        ("reconcile", "2026-09-12", "2026-09-12"),
    ], runs
    for run in runs:
        end, steps = run["end"], run["steps"]
        assert end is not None, run
        # one line per finished step, counted against the run's plan, in order
        assert [s["i"] for s in steps] == list(range(1, len(steps) + 1)), run
        assert {s["of"] for s in steps} == {end["planned"]}, run
        assert end["done"] == sum(s["ok"] for s in steps)
        assert end["failed"] == sum(not s["ok"] for s in steps)
        assert end["done"] + end["failed"] + end["not_run"] == end["planned"]
    assert [x["end"]["ok"] for x in runs] == [True, False, True, True]
    # the nightly job: 22 asset steps and the raw tables' dbt source freshness; the reconcile job:
    # five reconciliations, then the breaks and ROI marts that read them, then the analysts' copy
    # (the nightly job ends with it too)
    assert runs[0]["end"]["planned"] == 23 and runs[3]["end"]["planned"] == 7
    failed = [s for s in runs[1]["steps"] if not s["ok"]]
    assert [s["step"] for s in failed] == ["erp_exports"]
    assert "batch rejected" in failed[0]["reason"]
    assert runs[1]["end"]["not_run"] > 0
    # the exports the world drifted (listed in its defect manifest) are the ones re-exported
    drifted = sorted(d["day"] for d in json.loads((home / "sandbox" / "defects.json").read_text())["defects"]
                     if d["kind"] == "schema_drift")
    assert drifted and all("2026-09-07" <= d <= "2026-09-12" for d in drifted), drifted
    assert all(d in failed[0]["reason"] for d in drifted), failed
    assert (f"The ERP team re-exports {', '.join(drifted)}; Trueup runs 2026-09-07 .. 2026-09-12 again:"
            in out)

    # every run is a Dagster run in the instance (the UI shows them), with the status printed
    from dagster import DagsterInstance, DagsterRunStatus

    monkeypatch.setenv("DAGSTER_HOME", str(home / "dagster"))   # as `trueup` and Dagster's CLIs load it
    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        recorded = {x.run_id[:8]: x for x in instance.get_runs()}
        assert len(recorded) == len(runs)
        for run in runs:
            dr = recorded[run["end"]["run_id"]]
            assert dr.job_name == run["job"] and dr.tags.get("trueup/trigger") == "demo"
            assert dr.status == (DagsterRunStatus.SUCCESS if run["end"]["ok"] else DagsterRunStatus.FAILURE)

    # the summary table is the warehouse's (and the ERP's) account
    import duckdb

    con = duckdb.connect(str(home / "warehouse.duckdb"), read_only=True)
    try:
        def one(sql):
            return con.execute(sql).fetchone()[0] or 0

        # rows the nightly ingest synced (publish also lands what it created, read back from the ERP)
        raw_rows = sum(one(f"SELECT count(*) FROM raw.{t} WHERE _source NOT LIKE '%read back after publish%'")
                       for t in ("crm_companies", "crm_contacts", "crm_deals", "erp_customers", "erp_sales_orders",
                                 "erp_invoices", "erp_payments"))
        expect = {
            "rows synced into raw": raw_rows,
            "rows quarantined (open)": one("SELECT count(*) FROM quality.quarantine WHERE status = 'open'"),
            "ERP orders created by Trueup": one("SELECT count(*) FROM ops.sor_writes WHERE target_system = 'erp' "
                                                "AND target_object = 'sales_orders' AND state = 'confirmed'"),
            "reconciliation breaks open": one("SELECT count(*) FROM recon.breaks WHERE status = 'open' "
                                              "AND category = 'break'"),
            "reconciliation breaks resolved": one("SELECT count(*) FROM recon.breaks WHERE status = 'resolved' "
                                                  "AND category = 'break'"),
        }
        # money at risk once per root cause: the largest open break of each chain
        risk = float(one("SELECT sum(m) FROM (SELECT max(amount_at_risk) AS m FROM recon.breaks WHERE status = "
                         "'open' AND category = 'break' GROUP BY coalesce(chain_key, break_id)) x"))
        sections = {c: con.execute("SELECT count(*), coalesce(sum(amount_pending), 0) FROM recon.breaks WHERE "
                                   "status = 'open' AND category = ?", [c]).fetchone() for c in ("pending", "timing")}
        cur = con.execute("SELECT * FROM marts.roi_summary")
        cols = [d[0] for d in cur.description]
        roi = {row[cols.index("period")]: dict(zip(cols, row)) for row in cur.fetchall()}
        held_deals = con.execute("SELECT count(*) FROM ops.sor_writes WHERE target_object = 'sales_orders' "
                                 "AND state IN ('held', 'awaiting_approval')").fetchone()[0]
    finally:
        con.close()
    for label, value in expect.items():
        assert _num(_table_value(out, label)) == value, label
    assert abs(_num(_table_value(out, "money at risk (USD)")) - risk) < 0.006
    # the reconciliation in three parts: real breaks (money once), pending work, not yet due
    real = re.search(r"^  real breaks \(money at risk, counted once\) +(\d+) +([\d,.]+)", out, re.M)
    assert real and int(real.group(1)) == expect["reconciliation breaks open"]
    assert abs(_num(real.group(2)) - risk) < 0.006
    for title, category in (("pending work: waits for a person", "pending"), ("timing: not yet due", "timing")):
        line = re.search(rf"^  {re.escape(title)} +(\d+) +([\d,.]+)", out, re.M)
        n, amount = sections[category]
        if n:
            assert line and int(line.group(1)) == n and abs(_num(line.group(2)) - float(amount)) < 0.006, title
    assert expect["ERP orders created by Trueup"] > 0, "orders are posted from go-live"
    assert expect["rows quarantined (open)"] > 0 and expect["reconciliation breaks open"] > 0
    # ... and the orders it counts are in the ERP, created by the integration
    erp = sqlite3.connect(home / "sandbox" / "erp.sqlite")
    try:
        in_erp = erp.execute("SELECT count(*) FROM sales_orders WHERE source = 'integration'").fetchone()[0]
    finally:
        erp.close()
    assert in_erp == expect["ERP orders created by Trueup"]
    # no order before go-live came from Trueup: the baseline run posted nothing
    assert "created 0 ERP orders" in out.split("== 3.")[0]

    # ROI before/after: marts.roi_summary's baseline and current periods
    assert re.search(r"^  ROI \(go-live 2026-09-07\) +before \(manual\) +after \(Trueup\) +change$", out, re.M)
    before, after = _roi_row(out, "deal to ERP order, hours (p50)")[:2]
    assert _num(before) == pytest.approx(float(roi["baseline"]["deal_to_order_hours_p50"]), abs=0.051)
    assert _num(after) == pytest.approx(float(roi["current"]["deal_to_order_hours_p50"]), abs=0.051)
    assert _roi_row(out, "orders without a manual touch")[:2] == [
        f"{roi['baseline']['touchless_rate']:.0%}", f"{roi['current']['touchless_rate']:.0%}"]
    before, after = _roi_row(out, "revenue leakage: never ordered (USD)")[:2]
    assert _num(before) == pytest.approx(float(roi["baseline"]["revenue_leakage"]), abs=0.51)
    assert _num(after) == pytest.approx(float(roi["current"]["revenue_leakage"]), abs=0.51)
    # what waits for a person is said apart from the leakage, not in it
    before, after = _roi_row(out, "waiting for a person (not leakage) (USD)")[:2]
    assert _num(after) == pytest.approx(float(roi["current"]["pending_amount"]), abs=0.51)
    if held_deals:
        assert _num(after) > 0
    # each period's window is shown
    assert re.search(r"^  window +\d\d-\d\d\.\.\d\d-\d\d \(\d+d\) +\d\d-\d\d\.\.\d\d-\d\d \(\d+d\)$", out, re.M)


def _roi_row(stdout: str, label: str) -> list[str]:
    """before, after (and the change, when there is one) of one ROI measure."""
    rows = [line for line in stdout.splitlines() if line.startswith(f"  {label}  ")]
    assert len(rows) == 1, f"{label!r}: {rows}"
    return rows[0][len(label) + 2:].split()


# ------------------------------------------------------------------------------ the progress display alone
class _Pipe(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return False


class _Tty(_Pipe):
    def isatty(self) -> bool:
        return True


def _tiny_job():
    from dagster import Failure, In, Nothing, job, op

    @op
    def load():
        print("noise from the run itself")
        time.sleep(1.2)

    @op(ins={"after": In(Nothing)})
    def check():
        raise Failure(description="3 rows broke the contract")

    @op(ins={"after": In(Nothing)})
    def publish():
        pass

    @job
    def tiny():
        publish(after=check(after=load()))

    return tiny


@pytest.mark.parametrize("out_cls", [_Pipe, _Tty], ids=["pipe", "terminal"])
def test_progress_lines_from_the_event_log(tmp_path, out_cls):
    import uuid

    from dagster import DagsterInstance

    from trueup.orchestration.progress import RunProgress

    out = out_cls()
    progress = RunProgress(out=out, interval=0.1, log_path=tmp_path / "run.log")
    (tmp_path / "dagster").mkdir()
    with DagsterInstance.local_temp(str(tmp_path / "dagster"), overrides={"telemetry": {"enabled": False}}) as instance:
        run_id = str(uuid.uuid4())
        with progress(instance, run_id):
            result = _tiny_job().execute_in_process(instance=instance, run_id=run_id, raise_on_error=False)
    assert not result.success
    text = out.getvalue()
    # what stays on screen: the live line (terminal only) is always rewritten or cleared
    lines = [x for x in (seg.split("\r")[-1].replace("\x1b[K", "") for seg in text.split("\n")) if x]
    parsed = [STEP_LINE.match(x) for x in lines]
    assert all(parsed), text
    assert [(m[1], m[2], m[3], m[4], m[6]) for m in parsed] == [
        ("1", "3", "✓", "load", None), ("2", "3", "✗", "check", "3 rows broke the contract")], text
    assert 1.1 <= float(parsed[0][5]) < 5
    assert [s.step for s in progress.steps] == ["load", "check"] and progress.not_run == 1
    assert "noise from the run itself" not in text
    assert "noise from the run itself" in (tmp_path / "run.log").read_text()
    if out_cls is _Tty:
        assert "\r\x1b[K" in text and "load" in text.split("[ 1/3]")[0], "a live line while load runs"
        assert text.endswith("\n") or text.endswith("\r\x1b[K"), "the live line is cleared at the end"
    else:
        assert "\r" not in text and "\x1b" not in text


def test_demo_backfill_chunks():
    from trueup.sandbox.demo import _chunks

    d = dt.date
    assert _chunks(d(2026, 10, 1), d(2026, 10, 31), 7) == [
        (d(2026, 10, 1), d(2026, 10, 7)), (d(2026, 10, 8), d(2026, 10, 14)), (d(2026, 10, 15), d(2026, 10, 21)),
        (d(2026, 10, 22), d(2026, 10, 31))]   # a 3-day tail joins the last week
    assert _chunks(d(2026, 10, 1), d(2026, 10, 31), 31) == [(d(2026, 10, 1), d(2026, 10, 31))]
    assert _chunks(d(2026, 10, 1), d(2026, 10, 31), 100) == [(d(2026, 10, 1), d(2026, 10, 31))]
    assert _chunks(d(2026, 10, 1), d(2026, 10, 3), 1) == [(d(2026, 10, i), d(2026, 10, i)) for i in (1, 2, 3)]
    assert _chunks(d(2026, 10, 1), d(2026, 10, 31), 16) == [
        (d(2026, 10, 1), d(2026, 10, 16)), (d(2026, 10, 17), d(2026, 10, 31))]


def test_progress_with_an_ephemeral_instance():
    """An in-memory instance has no ref to open a second one from: the run's own is read."""
    import uuid

    from dagster import DagsterInstance

    from trueup.orchestration.progress import RunProgress

    out = _Pipe()
    progress = RunProgress(out=out, interval=0.1)
    with DagsterInstance.ephemeral() as instance:
        run_id = str(uuid.uuid4())
        with progress(instance, run_id):
            _tiny_job().execute_in_process(instance=instance, run_id=run_id, raise_on_error=False)
    assert [(s.step, s.ok) for s in progress.steps] == [("load", True), ("check", False)], out.getvalue()


def test_progress_marks_fall_back_to_ascii():
    from trueup.orchestration.progress import _marks

    class Latin1(io.StringIO):
        encoding = "latin-1"

    assert _marks(_Pipe()) == ("✓", "✗", "…")
    assert _marks(Latin1()) == ("ok", "FAILED", "...")
