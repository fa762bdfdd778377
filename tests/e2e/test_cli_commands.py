"""The commands a person reaches for after a night, on one small seeded world (one backfill shared
by the module): `backfill --json`, `breaks list|show`, `sync`, `publish --dry-run`,
`nightly --quiet`, and the one-line errors for names that do not exist. Each is called
in-process through `trueup.orchestration.cli.main`, its output captured as a user sees it."""
from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re

import pandas as pd
import pytest
import sqlalchemy as sa

from trueup.orchestration.cli import main
from tests.world_fixtures import SMALL_WORLD, world_in_env

pytestmark = pytest.mark.slow

#: big enough for breaks of several types and for deals to publish on the last day; no drifted exports
CFG = dataclasses.replace(SMALL_WORLD, scale=3.0, days=10, schema_drift_days=())


@dataclasses.dataclass
class Night:
    world: object
    code: int
    out: str
    err: str


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    """The world's days but the last, backfilled in one run with `--json`; the last day is left
    for `sync`, `publish --dry-run` and `nightly`."""
    with pytest.MonkeyPatch.context() as mp, \
            world_in_env(mp, tmp_path_factory.mktemp("cli") / "home", cfg=CFG) as w:
        mp.setenv("TRUEUP_PUBLISH_FROM", CFG.golive.isoformat())
        days = w.days()
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["backfill", "--start", str(days[0]), "--end", str(days[-2]), "--json"])
        yield Night(w, code, out.getvalue(), err.getvalue())


def sql(query: str, params: dict | None = None) -> pd.DataFrame:
    from trueup.connectors.warehouse import Warehouse
    from trueup.orchestration.config import load_settings

    wh = Warehouse(load_settings().warehouse_url)
    try:
        return wh.query_df(query, params)
    finally:
        wh.dispose()


def cli(capfd, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capfd.readouterr()
    return code, out, err


def one_line_error(code: int, out: str, err: str, *needles: str) -> str:
    assert code == 1, (code, out, err)
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trueup: error: "), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


OPEN_SQL = ("SELECT break_id, recon_name, break_type, category, business_key, owner_system, "
            "coalesce(amount_at_risk, 0) + coalesce(amount_pending, 0) AS amount FROM recon.breaks "
            "WHERE status = 'open'")


# ------------------------------------------------------------------------------ backfill --json
def test_backfill_json_is_one_object_for_the_run_dagster_recorded(night):
    from dagster import DagsterInstance, DagsterRunStatus

    assert night.code == 0, night.err
    report = json.loads(night.out)   # the whole of stdout: one object, nothing else
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(report["run_id"])
        stats = {s.step_key: s for s in instance.get_run_step_stats(report["run_id"])}
    assert run is not None and run.status == DagsterRunStatus.SUCCESS
    assert report["success"] is True and report["job"] == "nightly_sync"
    assert report["partitions"] == f"{CFG.start_date} .. {night.world.days()[-2]}"
    assert {s["step"] for s in report["steps"]} == set(stats) and "dbt_models" in stats
    assert all(s["status"] == "success" and s["seconds"] >= 0 for s in report["steps"])
    assert report["rows_synced"] > 0
    assert report["writes_confirmed"] == len(sql("SELECT * FROM ops.sor_writes WHERE run_id = :r AND state = "
                                                 "'confirmed'", {"r": report["run_id"]}))
    breaks = sql(OPEN_SQL + " AND category = 'break'")
    assert report["breaks_open"] == len(breaks) > 0
    risk = sql("SELECT sum(counted_at_risk) FROM recon.breaks_counted WHERE status = 'open'").iat[0, 0]
    assert report["money_at_risk"] == pytest.approx(float(risk)) and report["currency"] == "USD"


# ------------------------------------------------------------------------------ breaks
def test_breaks_list_shows_every_open_finding(night, capfd):
    code, out, err = cli(capfd, "breaks", "list")
    assert code == 0 and err == "", err
    expected = sql(OPEN_SQL)
    assert len(expected) > 1
    listed = [line.split()[0] for line in out.splitlines() if re.match(r"[0-9a-f]{24}\s", line)]
    assert sorted(listed) == sorted(expected["break_id"])
    assert out.splitlines()[-1].startswith(f"{len(expected)} open: ")
    top = expected.sort_values("amount", ascending=False).iloc[0]
    line = next(x for x in out.splitlines() if x.startswith(top.break_id))
    assert f"{float(top.amount):,.2f}" in line and top.business_key in line and top.break_type in line


def test_breaks_list_filters(night, capfd):
    everything = sql(OPEN_SQL)
    threshold = float(everything["amount"].median())
    code, out, _ = cli(capfd, "breaks", "list", "--min-amount", str(threshold), "--json")
    assert code == 0
    got = json.loads(out)
    want = everything[everything["amount"].astype(float) >= threshold]
    assert 0 < got["count"] == len(want) < len(everything)
    assert sorted(b["id"] for b in got["breaks"]) == sorted(want["break_id"])

    recon = everything["recon_name"].value_counts().index[-1]   # the reconciliation with the fewest
    code, out, _ = cli(capfd, "breaks", "list", "--recon", recon, "--json")
    assert sorted(b["id"] for b in json.loads(out)["breaks"]) == sorted(
        everything.loc[everything["recon_name"] == recon, "break_id"])

    kind = everything["break_type"].iloc[0]
    code, out, _ = cli(capfd, "breaks", "list", "--type", kind, "--json")
    assert sorted(b["id"] for b in json.loads(out)["breaks"]) == sorted(
        everything.loc[everything["break_type"] == kind, "break_id"])


def test_breaks_show(night, capfd):
    b = sql(OPEN_SQL + " AND category = 'break' ORDER BY amount DESC").iloc[0]
    code, out, err = cli(capfd, "breaks", "show", b.break_id[:10])   # a unique prefix will do
    assert code == 0, err
    fields = dict(re.match(r"([^:]+):\s+(.*)", line).groups() for line in out.splitlines())
    assert fields["break"] == b.break_id and fields["record keys"] == b.business_key
    assert fields["money at risk"] == f"USD {float(b.amount):,.2f}"
    assert fields["suggested owner"].lower().startswith(b.owner_system)
    code, out, _ = cli(capfd, "breaks", "show", b.break_id, "--json")
    shown = json.loads(out)
    assert (shown["id"], shown["recon"], shown["amount"]) == (b.break_id, b.recon_name, float(b.amount))


@pytest.mark.parametrize("args, needles", [
    (("breaks", "list", "--type", "missing_everything"), ("unknown break type 'missing_everything'", "{type}")),
    (("breaks", "list", "--recon", "deals"), ("unknown reconciliation 'deals'", "deals_vs_orders")),
    (("breaks", "show", "0123456789abcdef01234567"), ("no break '0123456789abcdef01234567'",)),
    (("quarantine", "list", "--contract", "crm_deals"), ("unknown contract 'crm_deals'", "crm_deals.inbound")),
])
def test_unknown_names_are_one_line_errors_naming_the_valid_ones(night, capfd, args, needles):
    kind = sql("SELECT min(break_type) FROM recon.breaks").iat[0, 0]
    one_line_error(*cli(capfd, *args), *(n.format(type=kind) for n in needles))


# ------------------------------------------------------------------------------ sync, publish --dry-run, nightly
def _erp_and_ledger(w) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(w.paths.erp_url)
    try:
        with engine.connect() as conn:
            state = {t: pd.read_sql(sa.text(f"SELECT * FROM {t} ORDER BY 1"), conn)
                     for t in ("customers", "sales_orders")}
    finally:
        engine.dispose()
    state["ledger"] = sql("SELECT * FROM ops.sor_writes ORDER BY write_id")
    state["quarantine"] = sql("SELECT * FROM quality.quarantine ORDER BY quarantine_id")
    return state


def test_sync_then_a_dry_run_lists_exactly_what_the_night_then_writes(night, capfd):
    w, day = night.world, str(night.world.days()[-1])
    code, out, err = cli(capfd, "sync", "--date", day, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["success"] and report["job"] == "sync_and_gate" and report["partitions"] == day
    steps = {s["step"] for s in report["steps"]}
    assert steps and all(re.match(r"(raw|validated)__|erp_exports$", s) for s in steps), steps
    assert report["rows_synced"] > 0 and report["writes_confirmed"] == 0

    before = _erp_and_ledger(w)
    code, out, err = cli(capfd, "publish", "--dry-run", "--date", day)
    assert code == 0, err
    after = _erp_and_ledger(w)
    for name, df in before.items():   # read-only: the ERP, the ledger and the quarantine as they were
        pd.testing.assert_frame_equal(df, after[name], obj=name)
    rows = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith("erp-")]
    planned = {r[0] for r in rows if r[3] == "send"}
    assert planned and any(k.startswith("erp-order:") for k in planned), out
    total = out.splitlines()[-1]
    assert total.startswith(f"total: would send {len(planned)} writes"), total
    for r in rows:
        if r[0].startswith("erp-order:"):
            assert re.fullmatch(r"[\d,]+\.\d\d [A-Z]{3}", r[2]), r

    code, out, err = cli(capfd, "nightly", "--date", day, "--quiet")
    assert (code, out, err) == (0, "", "")
    # what the night put into the ERP is what the dry run listed, record for record
    now = _erp_and_ledger(w)
    new_customers = set(now["customers"]["crm_company_id"].astype(str)) - set(
        before["customers"]["crm_company_id"].dropna().astype(str))
    new_orders = set(now["sales_orders"]["order_number"]) - set(before["sales_orders"]["order_number"])
    new_deals = set(now["sales_orders"].set_index("order_number").loc[sorted(new_orders), "crm_deal_id"].astype(str))
    assert {k.rsplit(":", 1)[1] for k in planned if k.startswith("erp-customer:")} == new_customers
    assert {k.rsplit(":", 1)[1] for k in planned if k.startswith("erp-order:")} == new_deals
    assert len(new_orders) == len(new_deals)


def test_quiet_failure_is_one_line_on_stderr(night, capfd, monkeypatch):
    from tests.fixtures_cli import free_port

    monkeypatch.setenv("TRUEUP_CRM_BASE_URL", f"http://127.0.0.1:{free_port()}")   # nothing listens
    one_line_error(*cli(capfd, "nightly", "--date", str(night.world.days()[-1]), "--quiet"), "CRM")


def test_a_run_in_text_shows_each_step_as_it_finishes_then_the_summary_and_its_ui_page(night, capfd):
    """`trueup nightly` as a person runs it (last in the module: it re-runs the last night): a
    line saying what runs, one line per finished step with its mark and seconds, the summary and
    the run's page in the Dagster UI; dbt's and Dagster's own output is not on the terminal but in
    logs/cli-output.log; no colour codes when the output is no terminal."""
    from trueup.orchestration.config import load_settings

    day = str(night.world.days()[-1])
    code, out, err = cli(capfd, "nightly", "--date", day)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"nightly_sync {day}: running (Dagster UI: `trueup ui`)"
    steps = [line for line in lines if re.match(r"^\s+\[\s*\d+/\d+\] (✓|ok) \S+\s+\d+\.\ds$", line)]
    planned = int(re.search(r"/(\d+)\]", steps[0]).group(1))
    assert len(steps) == planned and any("dbt" in s for s in steps), out
    run_id = re.search(r"^run ([0-9a-f-]{36}) \(" + day + r"\): success$", out, re.M).group(1)
    assert f"in the Dagster UI: http://127.0.0.1:3000/runs/{run_id}" in out
    assert "\x1b[" not in out and "Running with dbt" not in out + err
    log = load_settings().home / "logs" / "cli-output.log"
    assert log.is_file() and (log.stat().st_mode & 0o077) == 0
