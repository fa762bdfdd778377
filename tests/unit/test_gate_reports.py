"""The gate's HTML reports: each rule with its parameters, the offending values of quarantined
rows with PII masked, a link to the run, an index across days and contracts — served by
`trueup docs` under /quality/ and nothing else of TRUEUP_HOME."""
from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pandas as pd
import pytest

from trueup.quality.contracts import contract_for
from trueup.quality.gate import evaluate_batch
from trueup.quality.gx_suites import GxValidator
from trueup.quality.reports import index_url, report_url, write_gate_report, write_index
from tests.contract_samples import GOOD


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Two days of crm_contacts gated: one clean, one with a bad email and an unknown company."""
    root = tmp_path_factory.mktemp("home") / "reports"
    contract, validator = contract_for("crm_contacts"), GxValidator()
    refs = {"crm_company_ids": ["7"]}
    bad = {**GOOD["crm_contacts"], "id": "202", "email": "jane.doe.at.example", "associatedcompanyid": "99"}
    for day, rows in (("2026-10-01", [GOOD["crm_contacts"]]), ("2026-10-02", [GOOD["crm_contacts"], bad])):
        outcome = evaluate_batch(contract, pd.DataFrame(rows), refs, validator)
        write_gate_report(root, outcome, day, f"run-{day}")
    write_index(root / "gates")
    return root


def test_a_report_shows_parameters_offending_values_masked_and_the_run(reports):
    page = (reports / "gates" / "crm_contacts.inbound" / "2026-10-02.html").read_text()
    assert "matches ^[A-Za-z0-9._%+&#x27;-]+@" in page              # the email rule's pattern
    assert "exists in crm_company_ids" in page                        # the referential rule's reference
    assert "associatedcompanyid = &#x27;99&#x27;" in page              # the offending value, as it was
    assert "jane.doe.at.example" not in page and "email = " in page   # … and the PII one, masked
    assert 'href="http://127.0.0.1:3000/runs/run-2026-10-02"' in page


def test_the_index_lists_every_report_newest_first(reports):
    index = (reports / "gates" / "index.html").read_text()
    assert index.index("2026-10-02") < index.index("2026-10-01")
    assert 'href="crm_contacts.inbound/2026-10-02.html"' in index and "quarantined rows" in index


def test_trueup_docs_serves_the_reports_and_nothing_else_of_the_home(reports, tmp_path):
    from trueup.orchestration.cli_docs import docs_server

    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("dbt docs")
    (reports.parent / "warehouse.duckdb").write_text("secret")
    server = docs_server(site, reports, 0)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        def get(url: str) -> str:
            return urllib.request.urlopen(url, timeout=5).read().decode()

        assert get(f"http://127.0.0.1:{port}/") == "dbt docs"
        assert "Gate reports" in get(index_url(port))
        assert "crm_contacts.inbound v" in get(report_url("crm_contacts.inbound", "2026-10-02", port))
        for escape in ("/quality/../warehouse.duckdb", "/quality/%2e%2e/warehouse.duckdb", "/../warehouse.duckdb"):
            with pytest.raises(urllib.error.HTTPError):
                get(f"http://127.0.0.1:{port}{escape}")
    finally:
        server.shutdown()
        server.server_close()
