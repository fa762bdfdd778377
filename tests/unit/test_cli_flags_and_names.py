"""The `trueup` commands that need no generated world: `--version`, the one-line errors for bad
names and bad combinations, and `breaks list|show` over a recon.breaks written by hand (money at
risk counted once per root cause, the amount filter's edge, ids by prefix). Called in-process
through `trueup.orchestration.cli.main`; the world-level checks are tests/e2e/test_cli_commands.py."""
from __future__ import annotations

import datetime as dt
import json
import os
from importlib.metadata import version

import pytest
import sqlalchemy as sa

from trueup.orchestration.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    for k in [k for k in os.environ if k.startswith("TRUEUP_") or k == "DAGSTER_HOME"]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRUEUP_CRM_BASE_URL", "http://127.0.0.1:9")   # never reached by these commands
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(result: tuple[int, str, str], *needles: str) -> str:
    code, out, err = result
    assert code == 1 and out == "", (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trueup: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"trueup {version('trueup')}"


@pytest.mark.parametrize("args, needles", [
    (("quarantine", "list", "--contract", "crm_deals"), ("unknown contract 'crm_deals'", "did you mean crm_deals.inbound",
                                                          "erp_sales_orders.outbound")),
    (("publish",), ("--dry-run",)),
    (("sync", "--date", "2026-09-02", "--start", "2026-09-01", "--end", "2026-09-03"), ("not both",)),
    (("sync", "--start", "2026-09-01"), ("--start and --end go together",)),
    (("sync", "--start", "2026-09-03", "--end", "2026-09-01"), ("before --start",)),
    (("breaks", "list"), ("nothing reconciled yet",)),
    (("breaks", "show", "abc"), ("nothing reconciled yet",)),
])
def test_bad_names_and_combinations_are_one_line_errors(home, capsys, args, needles):
    one_line_error(run(capsys, *args), *needles)


def test_json_and_quiet_exclude_each_other(home, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["nightly", "--json", "--quiet"])
    assert stop.value.code == 2 and "not allowed with" in capsys.readouterr().err


# ------------------------------------------------------------------------------ breaks over hand-made rows
BREAKS = [
    # one root cause (deal 1 → its order): 900 and 400 at risk, counted once as 900
    dict(break_id="aaaa00000000000000000001", recon_name="deals_vs_orders", break_type="amount_mismatch",
         category="break", business_key="D1", amount_at_risk=900, amount_pending=0, chain_key="deal:1",
         problem_date=dt.date(2026, 9, 2), owner_system="erp", reason="order SO-1 is 900 less than deal 1"),
    dict(break_id="aaaa00000000000000000002", recon_name="orders_vs_invoices", break_type="not_invoiced",
         category="break", business_key="SO-1", amount_at_risk=400, amount_pending=0, chain_key="deal:1",
         problem_date=dt.date(2026, 9, 4), owner_system="erp", reason="order SO-1 not invoiced"),
    dict(break_id="bbbb00000000000000000003", recon_name="deals_vs_orders", break_type="pending_approval",
         category="pending", business_key="D2", amount_at_risk=0, amount_pending=250, chain_key="deal:2",
         problem_date=dt.date(2026, 9, 9), owner_system="trueup", reason="waits for approval"),
    dict(break_id="cccc00000000000000000004", recon_name="deals_vs_orders", break_type="missing_in_erp",
         category="break", business_key="D3", amount_at_risk=75, amount_pending=0, chain_key="deal:3",
         problem_date=dt.date(2026, 9, 1), owner_system="erp", reason="gone", status="resolved"),
]


@pytest.fixture
def breaks(home):
    from trueup.assets.reconcile.store import ensure_recon_tables
    from trueup.connectors.warehouse import Warehouse
    from trueup.orchestration.config import load_settings

    wh = Warehouse(load_settings().warehouse_url)
    try:
        with wh.begin() as conn:
            ensure_recon_tables(conn)
            for b in BREAKS:
                row = {"status": "open", "left_system": "crm", "right_system": "erp", "currency": "USD",
                       "reporting_currency": "USD", "last_seen_as_of": dt.date(2026, 9, 10), "scope": "all",
                       "details": "{}", **b}
                conn.execute(sa.text(f"INSERT INTO recon.breaks ({', '.join(row)}) VALUES "
                                     f"({', '.join(':' + k for k in row)})"), row)
    finally:
        wh.dispose()
    return BREAKS


def test_list_counts_money_at_risk_once_per_root_cause(breaks, capsys):
    code, out, err = run(capsys, "breaks", "list")
    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[2:-1]] == [b["break_id"] for b in breaks[:3]]   # largest first
    first = lines[2]
    assert "900.00" in first and " 8d " in first and "ERP (finance)" in first and "900 less than deal 1" in first
    assert lines[-1].startswith("3 open: 2 breaks with USD 900.00 at risk (counted once per root cause); "
                                "1 waiting for a person and 0 not due yet (USD 250.00)")


def test_min_amount_keeps_amounts_at_or_above_it(breaks, capsys):
    code, out, _ = run(capsys, "breaks", "list", "--min-amount", "400", "--json")
    got = json.loads(out)
    assert code == 0 and [b["id"] for b in got["breaks"]] == [breaks[0]["break_id"], breaks[1]["break_id"]]
    assert got["money_at_risk"] == 900.0 and got["by_category"] == {"break": 2, "pending": 0, "timing": 0}
    code, out, _ = run(capsys, "breaks", "list", "--min-amount", "1000")
    assert code == 0 and out.strip() == "no open breaks matching the filters"


def test_unknown_type_names_the_recorded_ones(breaks, capsys):
    one_line_error(run(capsys, "breaks", "list", "--type", "amount"), "unknown break type 'amount'",
                   "amount_mismatch, missing_in_erp, not_invoiced, pending_approval")


def test_show_by_prefix_and_its_errors(breaks, capsys):
    code, out, _ = run(capsys, "breaks", "show", "cccc0000")
    assert code == 0 and "status:          resolved" in out and "resolved at:" in out
    one_line_error(run(capsys, "breaks", "show", "aaaa0000"), "start of 2 break ids")
    one_line_error(run(capsys, "breaks", "show", "dddd00000000000000000009"), "no break 'dddd00000000000000000009'")


def _complete(line: str, tmp_path) -> list[str]:
    """What the shell would offer for `line` (argcomplete's protocol, the way its bash code asks)."""
    import subprocess
    import sys

    answer = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "COMP_LINE": line, "COMP_POINT": str(len(line)),
           "_ARGCOMPLETE_STDOUT_FILENAME": str(answer), "_ARGCOMPLETE_IFS": "\n"}
    done = subprocess.run([sys.executable, "-m", "trueup.orchestration.cli"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return sorted(w.strip() for w in answer.read_text().split("\n") if w.strip())


def test_the_shell_completes_commands_subcommands_and_contract_names(tmp_path):
    assert _complete("trueup ba", tmp_path) == ["backfill"]
    words = _complete("trueup writes ", tmp_path)
    assert [w for w in words if not w.startswith("-")] == ["link", "list", "release", "undo"]
    assert _complete("trueup quarantine list --contract crm_d", tmp_path) == ["crm_deals.inbound"]


def test_completion_prints_the_shell_code_without_a_home(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path / "nowhere"))
    code, out, err = run(capsys, "completion", "bash")
    assert code == 0 and err == ""
    assert "complete " in out and "trueup" in out and "_python_argcomplete" in out
    assert not (tmp_path / "nowhere").exists()


def test_the_command_line_is_read_without_loading_the_platform():
    """Every `trueup` process builds the whole parser first, also `trueup writes list` or
    `trueup --help`: the parser must not load pandas, SQLAlchemy, Dagster or GX (it did, through
    the gate reports' URLs: ~0.5 s of CPU per command). Checked in a fresh interpreter."""
    import subprocess
    import sys

    heavy = ("pandas", "sqlalchemy", "dagster", "great_expectations", "duckdb", "dbt")
    probe = ("import sys; from trueup.orchestration.cli import build_parser; build_parser(); "
             f"print(' '.join(m for m in {heavy!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"building trueup's parser loaded: {done.stdout.strip()}"
