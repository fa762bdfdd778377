"""`python -m bench publish` at a tiny size: the benchmark's exactly-once outcomes hold and it
cleans up after itself (temporary home deleted, sandbox CRM stopped). No timings asserted."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.publish import main

pytestmark = pytest.mark.slow

ORDERS, CRM_UPDATES = 300, 100


def test_publish_benchmark_exactly_once_at_tiny_size(tmp_path, capsys):
    assert main(["--orders", str(ORDERS), "--crm-updates", str(CRM_UPDATES), "--out", str(tmp_path),
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "exactly-once checks: PASS" in printed

    [path] = list(tmp_path.glob("publish-*.json"))
    result = json.loads(path.read_text())
    s = result["summary"]
    assert s["checks_failed"] == [] and s["exactly_once"]
    assert s["erp_orders_in_erp"] == ORDERS
    assert s["erp_ledger_confirmed"] == ORDERS
    assert s["erp_rerun_writes"] == 0
    assert result["erp"]["floor"]["rows_differing_from_platform"] == 0
    assert s["crm_deals_updated"] == CRM_UPDATES           # only the first CRM_UPDATES write-backs were sent
    assert s["crm_ledger_confirmed"] == CRM_UPDATES
    assert s["crm_rerun_writes"] == 0 and s["crm_rerun_requests"] == 0
    assert result["crm"]["platform"]["server"]["requests_by_kind"] == {"batch_update": CRM_UPDATES // 100}

    # nothing left behind: the temporary TRUEUP_HOME is gone, the sandbox CRM process has ended
    assert not Path(result["trueup_home"]).exists()
    with pytest.raises(ProcessLookupError):
        os.kill(result["crm"]["server_pid"], 0)


def test_publish_benchmark_rejects_more_crm_updates_than_orders(capsys):
    with pytest.raises(SystemExit):
        main(["--orders", "10", "--crm-updates", "20"])
    assert "--crm-updates" in capsys.readouterr().err
