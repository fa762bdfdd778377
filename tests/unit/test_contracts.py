"""Contracts are versioned GX suites, and every kind of bad input ends in quarantine with its
reason or in a clear batch-level error — never a crash, a silent drop, or a passed row."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from trueup.assets.ingest.drift import SchemaDriftError, check_columns
from trueup.assets.ingest.objects import ALL_OBJECTS
from trueup.quality.contracts import CONTRACTS, contract_for
from trueup.quality.gate import evaluate_batch
from trueup.quality.gx_suites import GxValidator, build_suite
from tests.contract_samples import GOOD

VERSIONS = json.loads((Path(__file__).parents[2] / "quality/contracts/versions.json").read_text())


@pytest.fixture(scope="module")
def validator():
    return GxValidator()


def test_every_contract_change_has_a_new_version():
    for name, contract in CONTRACTS.items():
        recorded = VERSIONS.get(name, {}).get(contract.version)
        assert recorded == contract.fingerprint(), (
            f"{name} v{contract.version} changed without a new version: bump `version` and add "
            f"{{\"<new version>\": \"{contract.fingerprint()}\"}} to quality/contracts/versions.json")


def test_suites_are_gx_suites_carrying_their_version(validator):
    c = contract_for("crm_deals")
    suite = build_suite(c, {"crm_company_ids": ["1"]})
    assert suite.name == "crm_deals.inbound"
    assert suite.meta["version"] == c.version
    assert len(suite.expectations) == len(c.rules)


def test_gate_validations_skip_gx_data_fingerprint_and_still_count(validator):
    """GX hashes every pandas batch under 1 GB for a metadata fingerprint (60 % of a chunk's
    validation); the gate turns that off. If a GX release moves the switch, this fails, so
    the cost comes back noticed, not silently."""
    c = contract_for("erp_invoices")
    rows = pd.DataFrame([dict(GOOD["erp_invoices"], invoice_number=f"INV-{i}") for i in range(50)]
                        + [dict(GOOD["erp_invoices"], invoice_number=None)])
    result = validator.validate(build_suite(c, REFS, [r for r in c.rules if r.id == "invoice_number_present"]), rows)
    assert "pandas_data_fingerprint" not in result.meta["batch_markers"]
    assert result.results[0].result["unexpected_count"] == 1


def test_configurations_read_once_per_validation_are_the_ones_gx_builds(validator):
    """The gate reads each expectation's fields once per validation (GX rebuilt them ~80
    times, 0.35 s per reference rule); what GX gets must be exactly what it builds itself, for
    every kind of rule of every contract. If a GX release changes its own property, this fails."""
    import trueup.quality.gx_adapter as gs

    refs = {name: ["1", "C1001"] for c in CONTRACTS.values() for name in c.references}
    suites = [build_suite(c, refs) for c in CONTRACTS.values()]
    kinds = {r.kind for c in CONTRACTS.values() for r in c.rules}
    assert kinds >= {"not_null", "unique", "in_set", "in_reference", "regex", "decimal", "between", "a_gte_b"}
    for suite in suites:
        for e in suite.expectations:
            gs._CONFIGURATIONS.fields = {}
            try:
                once = [e.configuration, e.configuration]
            finally:
                gs._CONFIGURATIONS.fields = None
            outside = e.configuration   # no validation running: GX's own property
            assert once[0] is not once[1]   # a fresh object each time, as GX's
            for got in once:
                assert got.to_json_dict() == outside.to_json_dict() and got.type == outside.type


REFS = {"crm_company_ids": ["7", "8"], "erp_customer_numbers": ["C1001"], "erp_order_numbers": ["SO-1001"],
        "erp_invoice_numbers": ["INV-1001"]}

# (object, changes to the bad row, the rule(s) that must catch it)
CORPUS = [
    ("crm_deals", {"amount": None}, {"won_has_amount"}),
    ("crm_deals", {"amount": "-50.00"}, {"amount_plausible"}),
    ("crm_deals", {"amount": "99999999999.00"}, {"amount_plausible"}),
    ("crm_deals", {"amount": "12,50"}, {"amount_is_decimal"}),
    ("crm_deals", {"amount": "N/A"}, {"amount_is_decimal"}),
    ("crm_deals", {"amount": "1.234"}, {"amount_is_decimal"}),
    ("crm_deals", {"amount": ""}, {"won_has_amount"}),
    ("crm_deals", {"deal_currency_code": "EURO"}, {"currency_iso"}),
    ("crm_deals", {"deal_currency_code": "usd"}, {"currency_iso"}),
    ("crm_deals", {"deal_currency_code": None}, {"won_has_currency"}),
    ("crm_deals", {"company_id": None}, {"won_has_company"}),
    ("crm_deals", {"company_id": "999999"}, {"company_exists"}),
    ("crm_deals", {"dealname": None}, {"dealname_present"}),
    ("crm_deals", {"dealname": "x" * 10_000, "amount": "N/A"}, {"amount_is_decimal"}),
    ("crm_deals", {"dealname": "'; DROP TABLE raw.crm_deals; --", "deal_currency_code": "XXX"}, {"currency_iso"}),
    ("crm_deals", {"closedate": "1850-01-01T00:00:00Z"}, {"closedate_valid"}),
    ("crm_deals", {"closedate": "31/12/2026"}, {"closedate_valid"}),
    ("crm_deals", {"dealstage": "won"}, {"dealstage_known"}),
    ("crm_deals", {"id": "12a"}, {"id_format"}),
    ("crm_contacts", {"email": "ana.smith at acme.example"}, {"email_format"}),
    ("crm_contacts", {"email": "ünïcødé@例え.テスト"}, {"email_format"}),
    ("crm_contacts", {"email": "a@@b.example"}, {"email_format"}),
    ("crm_contacts", {"email": "x" * 10_000 + "@acme.example"}, set()),  # long but well-formed: passes
    ("crm_contacts", {"email": None}, {"email_present"}),
    ("crm_contacts", {"associatedcompanyid": "424242"}, {"company_exists"}),
    ("crm_contacts", {"firstname": "Robert'); DROP TABLE students;--"}, set()),  # a name is just text
    ("erp_invoices", {"due_date": "2026-09-01"}, {"due_after_issue"}),
    ("erp_invoices", {"issue_date": "2027-12-01", "due_date": "2027-12-31"}, {"issued_not_in_future"}),
    ("erp_invoices", {"order_number": "SO-404"}, {"order_exists"}),
    ("erp_invoices", {"amount": "-1.00"}, {"amount_plausible"}),
    ("erp_invoices", {"amount": None}, {"amount_present"}),
    ("erp_invoices", {"currency": "ABC"}, {"currency_iso"}),
    ("erp_invoices", {"status": "PAID!"}, {"status_known"}),
    ("erp_payments", {"invoice_number": "INV-404"}, {"invoice_exists"}),
    ("erp_payments", {"amount": "0.00"}, {"amount_plausible"}),
    ("erp_payments", {"method": "bitcoin"}, {"method_known"}),
    ("erp_payments", {"received_at": "0999-01-01T00:00:00Z"}, {"received_valid"}),
    ("erp_sales_orders", {"customer_number": "C404"}, {"customer_exists"}),
    ("erp_sales_orders", {"source": "robot"}, {"source_known"}),
    ("erp_sales_orders", {"total_amount": "1e6"}, {"total_amount_is_decimal"}),
]


@pytest.mark.parametrize("obj,changes,rules", CORPUS, ids=[f"{o}-{i}" for i, (o, _, _) in enumerate(CORPUS)])
def test_bad_input_is_quarantined_with_its_reason(obj, changes, rules, validator):
    contract = contract_for(obj)
    key = contract.key
    good = [dict(GOOD[obj], **{key: f"{GOOD[obj][key]}{i}" if obj.startswith("erp") else str(900 + i)})
            for i in range(3)]
    for i, row in enumerate(good):  # unique columns other than the key differ between good rows too
        if obj == "crm_contacts":
            row["email"] = f"person{i}@acme.example"
        if obj == "erp_sales_orders":
            row["crm_deal_id"] = str(500 + i)
    bad = dict(GOOD[obj], **changes)
    out = evaluate_batch(contract, pd.DataFrame([*good, bad]), REFS, validator)
    # nothing is lost, and the good rows are not held back by their bad neighbour
    assert out.rows_in == 4 == out.rows_passed + out.rows_quarantined
    assert set(out.passed[key]) >= {r[key] for r in good}
    if rules:
        assert out.rows_quarantined == 1
        assert set(out.quarantined["failed_expectations"].iloc[0]) == rules
        assert bad[key] not in set(out.passed[key])
    else:
        assert out.rows_quarantined == 0


def test_duplicated_business_keys_quarantine_every_copy(validator):
    contract = contract_for("erp_invoices")
    rows = [dict(GOOD["erp_invoices"]) for _ in range(3)] + [dict(GOOD["erp_invoices"], invoice_number="INV-2")]
    out = evaluate_batch(contract, pd.DataFrame(rows), REFS, validator)
    assert out.rows_quarantined == 3 and out.rows_passed == 1
    assert all("invoice_number_unique" in f for f in out.quarantined["failed_expectations"])


def test_empty_batch_passes_nothing_and_loses_nothing(validator):
    out = evaluate_batch(contract_for("crm_deals"), pd.DataFrame(columns=list(GOOD["crm_deals"])), REFS, validator)
    assert (out.rows_in, out.rows_passed, out.rows_quarantined, out.blocked) == (0, 0, 0, False)


def test_a_batch_where_every_row_is_bad_is_blocked(validator):
    contract = contract_for("erp_payments")
    rows = [dict(GOOD["erp_payments"], payment_id=f"PAY-{i}", method="cash") for i in range(250)]
    out = evaluate_batch(contract, pd.DataFrame(rows), REFS, validator)
    assert out.blocked and out.rows_quarantined == 250
    assert "batch blocked" in out.block_reason and "method_known (250)" in out.block_reason


@pytest.mark.parametrize("as_arrow", [False, True], ids=["dataframe", "arrow-chunk"])
def test_a_deletion_passes_untested_whatever_its_fields(validator, as_arrow):
    """A tombstone (archived = "true") carries no fields to check: it passes as it is, in an
    in-memory batch and in a chunk as the streamed gate reads it (an Arrow table)."""
    import pyarrow as pa

    from trueup.quality.gate import GateRun, batch_facts

    contract = contract_for("crm_deals")
    rows = pd.DataFrame([
        dict(GOOD["crm_deals"], id="1"),
        dict(GOOD["crm_deals"], id="2", amount="N/A", dealname=None, archived="true"),   # deleted: passes
        dict(GOOD["crm_deals"], id="3", amount="N/A"),                                   # live: quarantined
        dict(GOOD["crm_deals"], id="4", archived=None),                                  # not a deletion
    ]).assign(_partition="2026-10-01")
    expected, duplicates = batch_facts(contract, rows)
    run = GateRun(contract, REFS, expected, duplicates, validator, gx_mode="thread")
    passed, quarantined = run.feed(pa.Table.from_pandas(rows, preserve_index=False) if as_arrow else rows)
    o = run.finish()["2026-10-01"]
    assert sorted(passed["id"]) == ["1", "2", "4"] and list(quarantined["id"]) == ["3"]
    assert (o.rows_in, o.rows_passed, o.rows_quarantined) == (4, 3, 1)
    assert o.unexpected_counts["amount_is_decimal"] == 1 and o.unexpected_counts["dealname_present"] == 0
    # the deletion's "N/A" counts as 0, the live "N/A" went to quarantine
    assert o.money_in == pytest.approx(o.money_passed) == pytest.approx(2 * 1200.50)


def test_a_column_mixing_numbers_and_text_is_judged_value_by_value(validator):
    """A JSON API may send an amount as a number in one record and as text in the next: such a
    column is not Arrow-typed, so the gate prepares it in pandas (`GateRun._feed_mixed`); each
    value is still judged on its own, and money still balances."""
    contract = contract_for("erp_invoices")
    rows = [dict(GOOD["erp_invoices"], invoice_number=f"INV-{i}") for i in range(4)]
    rows[1]["amount"] = 12.5       # a number where text was expected: a plain decimal, passes
    rows[2]["amount"] = "12,50"    # wrong text
    rows[3]["amount"] = -3         # a negative number
    out = evaluate_batch(contract, pd.DataFrame(rows), REFS, validator)
    assert (out.rows_in, out.rows_passed, out.rows_quarantined) == (4, 2, 2)
    assert sorted(out.passed["invoice_number"]) == ["INV-0", "INV-1"]
    reasons = dict(zip(out.quarantined["invoice_number"], out.quarantined["failed_expectations"].map(list)))
    assert reasons == {"INV-2": ["amount_is_decimal"], "INV-3": ["amount_plausible"]}
    # 99.90 + 12.5 passed; "12,50" counts as 0 and -3 as -3
    assert out.money_passed == pytest.approx(112.4) and out.money_quarantined == pytest.approx(-3.0)
    assert out.money_in == pytest.approx(out.money_passed + out.money_quarantined)


def test_a_dropped_column_fails_its_rules_instead_of_crashing(validator):
    rows = pd.DataFrame([GOOD["erp_invoices"]]).drop(columns=["currency"])
    out = evaluate_batch(contract_for("erp_invoices"), rows, REFS, validator)
    assert out.rows_quarantined == 0  # a missing optional column is null: in_set ignores nulls
    rows = pd.DataFrame([GOOD["erp_invoices"]]).drop(columns=["amount"])
    out = evaluate_batch(contract_for("erp_invoices"), rows, REFS, validator)
    assert list(out.quarantined["failed_expectations"].iloc[0]) == ["amount_present"]


@pytest.mark.parametrize("change,message", [
    ({"rename": ("amount", "invoice_amount")}, "required column(s) amount missing (found new column(s) "
                                                "invoice_amount)"),
    ({"retype": ("amount", "12,50")}, "column amount no longer holds decimals"),
])
def test_renamed_or_retyped_columns_fail_the_batch_at_the_door(change, message):
    df = pd.DataFrame([GOOD["erp_invoices"]] * 3)
    if "rename" in change:
        df = df.rename(columns=dict([change["rename"]]))
    else:
        df[change["retype"][0]] = change["retype"][1]
    with pytest.raises(SchemaDriftError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_columns(ALL_OBJECTS["erp_invoices"], df, "export")


def test_counts_agree_with_gx_far_beyond_its_failing_row_cap(validator):
    """GX lists at most 20/200 failing rows on SQL backends; our split must find every one and
    match GX's unexpected_count exactly (the gate raises GateDisagreement otherwise)."""
    contract = contract_for("crm_contacts")
    rows = [dict(GOOD["crm_contacts"], id=str(i), email=f"p{i}@acme.example" if i % 3 else f"p{i} at acme")
            for i in range(3000)]
    out = evaluate_batch(contract, pd.DataFrame(rows), REFS, validator)
    assert out.unexpected_counts["email_format"] == 1000 == out.rows_quarantined
    assert out.blocked  # a third of the batch failing is an upstream problem, not a few bad rows


def test_days_given_as_dates_are_gated_as_their_text(validator):
    """An in-memory batch may carry its day as a date: the outcome is keyed by the day's text,
    and each day keeps its own passed and quarantined rows."""
    import datetime as dt

    from trueup.quality.gate import evaluate_partitions

    day = [dt.date(2026, 10, 1), dt.date(2026, 10, 2)]
    rows = pd.DataFrame([dict(GOOD["erp_invoices"], invoice_number=f"INV-{i}", _partition=day[i % 2]) for i in range(4)]
                        + [dict(GOOD["erp_invoices"], invoice_number="INV-9", currency="XXX", _partition=day[0])])
    out = evaluate_partitions(contract_for("erp_invoices"), rows, REFS, validator)
    assert {p: (o.rows_in, len(o.passed), list(o.quarantined["invoice_number"])) for p, o in out.items()} == {
        "2026-10-01": (3, 2, ["INV-9"]), "2026-10-02": (2, 2, [])}


def test_evaluators_open_at_once_each_see_their_own_references():
    """The gate's SQL evaluators share one in-memory DuckDB per process (quality/evaluate.py), each
    on a connection of its own: what one registers (its references) is not what another sees,
    and nothing of a closed one is left."""
    from trueup.quality.evaluate import ChunkEvaluator
    from trueup.quality.gate import prepare_batch

    contract = contract_for("crm_contacts")
    rows = prepare_batch(contract, pd.DataFrame([GOOD["crm_contacts"]]).assign(_row=0))
    company = GOOD["crm_contacts"]["associatedcompanyid"]
    knows = ChunkEvaluator(contract, {"crm_company_ids": [company]})
    does_not = ChunkEvaluator(contract, {"crm_company_ids": ["someone else"]})
    try:
        assert knows.failing_prepared(rows).empty
        assert does_not.failing_prepared(rows)["company_exists"].tolist() == [True]
    finally:
        does_not.close()
    again = ChunkEvaluator(contract, {"crm_company_ids": [company, "x"]})
    try:
        assert knows.failing_prepared(rows).empty and again.failing_prepared(rows).empty
    finally:
        knows.close()
        again.close()
