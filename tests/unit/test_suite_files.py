"""The contracts' GX suite files (quality/contracts/gx_suites/*.json) are the contracts: equal to
what the gate builds, and a suite loaded from its file judges rows as the gate's own suite does."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from trueup.quality.contracts import CONTRACTS, contract_for
from trueup.quality.suite_files import SUITES_DIR, suite_file, suite_json
from tests.contract_samples import GOOD


def test_every_contract_has_its_suite_file_as_the_code_builds_it():
    assert {p.name for p in SUITES_DIR.glob("*.json")} == {f"{name}.json" for name in CONTRACTS}
    stale = [c.name for c in CONTRACTS.values() if suite_file(c).read_text(encoding="utf-8") != suite_json(c)]
    assert not stale, f"suite files differ from their contracts {stale}: run `python -m trueup.quality.suite_files`"


def test_a_suite_loaded_from_its_file_judges_rows_as_the_gates_suite(tmp_path):
    """Stock GX: the file loaded into a context of its own, the referential value set given as the
    suite parameter; the same expectations fail as with the suite the gate builds."""
    from trueup.quality import gx_adapter
    from trueup.quality.gx_suites import GxValidator, build_suite

    gx = gx_adapter.import_gx()
    contract = contract_for("crm_contacts")
    rows = pd.DataFrame([{**GOOD["crm_contacts"], "_partition": "2026-10-01"},
                         {**GOOD["crm_contacts"], "id": "202", "email": "not-an-address", "associatedcompanyid": "99",
                          "_partition": "2026-10-01"}])
    companies = ["7"]

    validator = GxValidator()
    ours = validator.validate(build_suite(contract, {"crm_company_ids": companies}), rows)
    context = gx.get_context(mode="ephemeral")
    loaded = context.suites.add(gx.ExpectationSuite(**json.loads(suite_file(contract).read_text())))
    batch = (context.data_sources.add_pandas("file").add_dataframe_asset("rows")
             .add_batch_definition_whole_dataframe("all").get_batch(batch_parameters={"dataframe": rows}))
    theirs = batch.validate(loaded, expectation_parameters={"crm_company_ids": companies})

    def failed(result) -> list[str]:
        return sorted(r.expectation_config.meta["rule"] for r in result.results if not r.success)

    assert failed(ours) == failed(theirs) and {"email_format"} <= set(failed(ours)), failed(ours)
    assert any("company" in rule for rule in failed(ours)), failed(ours)
    # the parameter really is the value set: with the second company known, only the email fails
    known = batch.validate(loaded, expectation_parameters={"crm_company_ids": ["7", "99"]})
    assert not any("company" in rule for rule in failed(known)) and "email_format" in failed(known), failed(known)


@pytest.mark.parametrize("name", sorted(CONTRACTS))
def test_a_suite_file_names_its_contract_version(name):
    suite = json.loads((SUITES_DIR / f"{name}.json").read_text())
    assert suite["name"] == name and suite["meta"]["version"] == CONTRACTS[name].version
    assert [e["meta"]["rule"] for e in suite["expectations"]] == [r.id for r in CONTRACTS[name].rules]
