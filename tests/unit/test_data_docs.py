"""GX Data Docs of the gates (quality/data_docs.py): each gate result kept as a GX validation
result in the home's file-backed GX context; its page rendered by GX, when `trueup docs` is first
asked for it, with the gate's counts and the offending values (PII masked), the suite's page
beside it, an index built for `trueup docs`, and every page served under /quality/ — the URL the
check's metadata carries."""
from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from trueup.quality import gx_adapter
from trueup.quality.contracts import contract_for
from trueup.quality.data_docs import SITE_PATH, build_index, index_url, keep_results, render_page
from trueup.quality.gate import evaluate_batch
from trueup.quality.gx_suites import GxValidator
from tests.contract_samples import GOOD

BAD = {**GOOD["crm_contacts"], "id": "202", "email": "jane.doe.at.example", "associatedcompanyid": "99"}
DAYS = {"2026-10-01": [GOOD["crm_contacts"]], "2026-10-02": [GOOD["crm_contacts"], BAD]}


@pytest.fixture(scope="module")
def kept(tmp_path_factory):
    reports = tmp_path_factory.mktemp("home") / "reports"
    contract, validator = contract_for("crm_contacts"), GxValidator()
    outcomes = {day: evaluate_batch(contract, pd.DataFrame(rows), {"crm_company_ids": ["7"]}, validator)
                for day, rows in DAYS.items()}
    return reports, keep_results(reports, outcomes, "run-1"), outcomes


@pytest.fixture(scope="module")
def served(kept, tmp_path_factory):
    """`trueup docs`'s server over the kept results; a function from a check's URL to (status, page)."""
    from trueup.orchestration.cli_docs import docs_server

    reports = kept[0]
    server = docs_server(tmp_path_factory.mktemp("site"), reports, 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()

    def get(url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url.replace(":8080/", f":{server.server_address[1]}/"), timeout=30) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as refused:
            return refused.code, ""

    yield get
    server.shutdown()
    server.server_close()


def _text(html: str) -> str:
    html = re.sub(r"<(script|style).*?</\1>", "", html, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def _file(reports: Path, url: str) -> Path:
    return reports / url.split("/quality/", 1)[1]


def test_each_day_is_a_gx_validation_result_with_the_rows_that_failed(kept):
    reports, urls, _ = kept
    assert sorted(urls) == sorted(DAYS)
    stored = {p.stem: json.loads(p.read_text()) for p in (reports / "gx" / "uncommitted" / "validations").rglob("*.json")}
    assert sorted(stored) == sorted(DAYS)
    for day, rows in DAYS.items():
        result = stored[day]
        by_rule = {r["expectation_config"]["meta"]["rule"]: r["result"] for r in result["results"]}
        # recomputed from the rows themselves: the bad row fails the email pattern and the reference
        bad = sum(r is BAD for r in rows)
        assert by_rule["email_format"]["unexpected_count"] == bad
        assert by_rule["company_exists"]["unexpected_count"] == bad
        assert all(r["element_count"] == len(rows) for r in by_rule.values())
        assert result["success"] is (bad == 0) and result["meta"]["dagster_run_id"] == "run-1"


def test_keeping_a_result_renders_nothing_until_its_page_is_asked_for(tmp_path, served):
    """A gate step only keeps the result (rendering was ~0.15 s of a small gate step); the page
    appears when `trueup docs` is asked for it, and only a kept result's or suite's page does."""
    reports = tmp_path / "reports"
    contract, validator = contract_for("crm_contacts"), GxValidator()
    outcome = evaluate_batch(contract, pd.DataFrame([GOOD["crm_contacts"]]), {"crm_company_ids": ["7"]}, validator)
    url = keep_results(reports, {"2026-10-05": outcome}, "run-9")["2026-10-05"]
    assert not (reports / SITE_PATH).exists()
    page = _file(reports, url)
    assert render_page(reports, page.relative_to(reports)) and page.exists()
    assert "Great Expectations" in page.read_text()
    assert (page.parent / "2026-10-05.html").exists()
    # no page for a result that was never kept, nor for anything outside the site
    other_day = page.relative_to(reports).parent / "2026-10-06.html"
    assert not render_page(reports, other_day) and not (reports / other_day).exists()
    assert not render_page(reports, Path("gx") / "great_expectations.html")


def test_the_page_is_gx_s_own_with_counts_and_masked_values(kept, served):
    reports, urls, _ = kept
    status, html = served(urls["2026-10-02"])
    text = _text(html)
    assert status == 200 and "Data documentation compiled by Great Expectations" in text
    assert "crm_contacts.inbound" in text and "raw.crm_contacts" in text
    assert "1 unexpected values found. 50% of 2 total rows" in text
    assert "99" in text                                               # the unknown company, as it was
    assert "jane.doe.at.example" not in text                          # the PII value, masked
    suite_url = urls["2026-10-02"].split("/validations/")[0] + "/expectations/crm_contacts/inbound.html"
    status, html = served(suite_url)
    assert status == 200 and "Expectation Suite Name crm_contacts.inbound" in _text(html)
    assert "contains 7 total Expectations" in _text(html)
    assert served(urls["2026-10-02"].replace("2026-10-02.html", "2026-10-09.html"))[0] == 404


def test_the_index_lists_every_kept_result_and_trueup_docs_serves_the_site(kept, served):
    reports, urls, _ = kept
    index = build_index(reports)
    assert index == reports / SITE_PATH / "index.html"
    assert all(day in index.read_text() for day in DAYS)
    for url in (urls["2026-10-01"], index_url()):
        status, html = served(url)
        assert status == 200 and "Great Expectations" in html


def test_a_result_kept_again_for_the_same_contract_reuses_its_suite_and_its_page(kept, served):
    reports, urls, outcomes = kept
    suite_file = reports / "gx" / "expectations" / "crm_contacts" / "inbound.json"
    suite_url = urls["2026-10-01"].split("/validations/")[0] + "/expectations/crm_contacts/inbound.html"
    suite_page = _file(reports, suite_url)
    assert served(suite_url)[0] == 200
    before, page_before = suite_file.stat().st_mtime_ns, suite_page.stat().st_mtime_ns
    more = keep_results(reports, {"2026-10-03": outcomes["2026-10-01"]}, "run-2")
    assert served(more["2026-10-03"])[0] == 200 and suite_file.stat().st_mtime_ns == before
    assert suite_page.stat().st_mtime_ns == page_before   # kept: the suite did not change
    # a suite kept by an older contract: written again, and its old page goes (rendered anew when asked)
    stored = json.loads(suite_file.read_text())
    stored["meta"]["fingerprint"] = "an older contract"
    suite_file.write_text(json.dumps(stored))
    keep_results(reports, {"2026-10-04": outcomes["2026-10-01"]}, "run-3")
    assert json.loads(suite_file.read_text())["meta"]["fingerprint"] == outcomes["2026-10-01"].contract.fingerprint()
    assert not suite_page.exists()
    assert served(suite_url)[0] == 200 and suite_page.exists()


def test_the_context_kept_in_a_process_sees_results_another_process_kept(kept):
    """One GX context per folder and process (data_docs_context): its stores read the files, so
    a result another process's context wrote is in it."""
    import great_expectations as gx

    from trueup.quality.data_docs import data_docs_context, validation_result

    reports, _, outcomes = kept
    ours = data_docs_context(reports)
    assert data_docs_context(reports) is ours
    other = gx.get_context(mode="file", project_root_dir=str(reports))   # as another process builds it
    before = len(ours.validation_results_store.list_keys())
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier, ValidationResultIdentifier)

    name = outcomes["2026-10-01"].contract.name
    suite = other.suites.get(name)
    run = RunIdentifier(run_name="run-other", run_time=outcomes["2026-10-01"].evaluated_at)
    key = ValidationResultIdentifier(ExpectationSuiteIdentifier(name), run, "2026-10-09")
    other.validation_results_store.set(key, validation_result(suite, outcomes["2026-10-01"], "2026-10-09", run, "run-other"))
    assert len(ours.validation_results_store.list_keys()) == before + 1


def test_templates_compiled_once_render_the_same_page(kept, tmp_path):
    """The adapter's shared Jinja bytecode cache changes nothing GX renders."""
    reports, urls, outcomes = kept
    again = tmp_path / "stock" / "reports"
    with gx_adapter.as_shipped():
        stock = keep_results(again, {"2026-10-02": outcomes["2026-10-02"]}, "run-1")
        assert render_page(again, _file(again, stock["2026-10-02"]).relative_to(again))
    adjusted = keep_results(tmp_path / "adjusted" / "reports", {"2026-10-02": outcomes["2026-10-02"]}, "run-1")
    ours = tmp_path / "adjusted" / "reports"
    assert render_page(ours, _file(ours, adjusted["2026-10-02"]).relative_to(ours))

    def page(root, url):   # without the parts that differ by build (times, ids)
        return re.sub(r"\d{8}T\d{6}\.\d+Z|[0-9a-f]{8}-[0-9a-f-]{27}|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[^<\"]*", "",
                      _file(root, url).read_text())

    assert page(again, stock["2026-10-02"]) == page(tmp_path / "adjusted" / "reports", adjusted["2026-10-02"])
