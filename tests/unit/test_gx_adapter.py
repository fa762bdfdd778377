"""The gate's adjustments of Great Expectations (quality/gx_adapter.py) change nothing GX
decides: for every kind of rule, GX as the gate runs it and GX as shipped find the same
unexpected rows, and so does the kind's own SQL predicate. And the adjustments are applied
only to the GX versions they were tested with."""
from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from trueup.quality import gx_adapter
from trueup.quality.batch import ROW, prepare_batch
from trueup.quality.contracts.rules import DECIMAL_RE, Contract, Rule
from trueup.quality.evaluate import ChunkEvaluator
from trueup.quality.gx_suites import GxValidator, build_suite
from trueup.quality.rule_kinds import KINDS

great_expectations = gx_adapter.import_gx()   # as the gate imports it (collection too)

D1, D2 = "2026-10-01", "2026-10-02"

# per kind: its rules, a small frame, the reference key sets, and the rows each rule must fail
CASES = {
    "not_null": ([Rule("v_present", "not_null", "v"), Rule("v_present_if_won", "not_null", "v", when=("s", "won"))],
                 {"v": ["a", None, "", "b"], "s": ["won", "won", "lost", "lost"]}, {},
                 {"v_present": [1, 2], "v_present_if_won": [1]}),
    "unique": ([Rule("k_unique", "unique", "k")],
               {"k": ["1", "1", "1", "2", None, None], "_partition": [D1, D1, D2, D2, D1, D1]}, {},
               {"k_unique": [0, 1]}),
    "in_set": ([Rule("currency_iso", "in_set", "c", values=("USD", "EUR"))],
               {"c": ["USD", "usd", "EUR", None, "XXX"]}, {}, {"currency_iso": [1, 4]}),
    "in_reference": ([Rule("company_exists", "in_reference", "company", reference="company_ids")],
                     {"company": ["7", "8", "9", None]}, {"company_ids": ["7", "8"]}, {"company_exists": [2]}),
    "regex": ([Rule("id_format", "regex", "id", pattern=r"^[0-9]+$")],
              {"id": ["123", "12a", "4\n", None]}, {}, {"id_format": [1]}),   # `$` allows one trailing newline
    "decimal": ([Rule("amount_is_decimal", "decimal", "amount", pattern=DECIMAL_RE)],
                {"amount": ["1.00", "1.234", "12,50", "-3", None]}, {}, {"amount_is_decimal": [1, 2]}),
    "between": ([Rule("amount_plausible", "between", "amount", min_value=0.0, max_value=10.0)],
                {"amount": ["5", "11", "x", None, "-1", "10.00"]}, {}, {"amount_plausible": [1, 4]}),
    "a_gte_b": ([Rule("due_after_issue", "a_gte_b", "due", other="issue")],
                {"due": ["2026-01-02", "2026-01-01", None, "2026-01-01"],
                 "issue": ["2026-01-01", "2026-01-02", "2026-01-01", "2026-01-01"]}, {}, {"due_after_issue": [1]}),
}


@pytest.fixture(scope="module")
def validator():
    return GxValidator()


def _unexpected_rows(validator, suite, batch) -> dict[str, tuple[int, list[int]]]:
    result = validator.validate(suite, batch, result_format="COMPLETE")
    assert not any(r.exception_info and r.exception_info.get("raised_exception") for r in result.results)
    return {r.expectation_config.meta["rule"]: (r.result["unexpected_count"], sorted(r.result["unexpected_index_list"]))
            for r in result.results}


def test_every_rule_kind_has_a_case():
    assert set(CASES) == set(KINDS)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_adapter_finds_what_stock_gx_finds(kind, validator):
    rules, columns, references, failing = CASES[kind]
    contract = Contract(name=f"{kind}.inbound", object=kind, direction="inbound", version="0", key=rules[0].column,
                        rules=tuple(rules))
    batch = prepare_batch(contract, pd.DataFrame(columns))
    suite = build_suite(contract, references)
    from great_expectations.execution_engine import pandas_execution_engine

    assert gx_adapter.adjust() and pandas_execution_engine.HASH_THRESHOLD == 0   # the gate's GX
    adjusted = _unexpected_rows(validator, suite, batch)
    with gx_adapter.as_shipped():
        assert pandas_execution_engine.HASH_THRESHOLD > 0
        stock = _unexpected_rows(validator, suite, batch)
    assert adjusted == stock == {rule_id: (len(rows), rows) for rule_id, rows in failing.items()}

    # the kind's SQL predicate, as the gate evaluates a chunk, fails the same rows
    evaluator = ChunkEvaluator(contract, references)
    try:
        fails = evaluator.failing_prepared(batch)
    finally:
        evaluator.close()
    assert {r.id: sorted(fails.loc[fails[r.id], ROW].tolist()) for r in rules} == failing


def test_stock_gx_is_put_back_as_the_gate_adjusted_it(validator):
    from great_expectations.expectations.expectation import Expectation

    gx_adapter.adjust()
    adjusted = Expectation.configuration
    with gx_adapter.as_shipped():
        assert not getattr(Expectation.configuration.fget, "_trueup_once", False)
    assert Expectation.configuration is adjusted


def test_versions_are_checked():
    assert gx_adapter.version_is_tested(great_expectations.__version__)   # the locked release is tested
    assert not gx_adapter.version_is_tested("1.3.0")
    with pytest.raises(gx_adapter.GxVersionError, match="written for GX 1.x"):
        gx_adapter.version_is_tested("2.0.0")


def test_an_untested_release_runs_gx_as_shipped_with_a_warning(monkeypatch):
    from great_expectations.execution_engine import pandas_execution_engine
    from great_expectations.expectations.expectation import Expectation

    monkeypatch.setattr(gx_adapter, "_WARNED", set())
    with gx_adapter.as_shipped():
        monkeypatch.setattr(great_expectations, "__version__", "1.99.0")
        with pytest.warns(gx_adapter.UntestedGxVersion, match="1.99.0 was not tested"):
            assert gx_adapter.adjust() is False
        assert pandas_execution_engine.HASH_THRESHOLD > 0
        assert not getattr(Expectation.configuration.fget, "_trueup_once", False)
        monkeypatch.undo()


def test_another_major_release_is_refused(monkeypatch):
    monkeypatch.setattr(great_expectations, "__version__", "2.0.0")
    with pytest.raises(gx_adapter.GxVersionError):
        gx_adapter.import_gx()


def test_scipy_stats_is_imported_at_its_first_use_and_gating_never_uses_it():
    """In a fresh interpreter, as a process that gates: GX imported through the adapter, every kind
    of rule validated, and scipy.stats still not imported; then GX's own KL-divergence module reads
    an attribute of its `stats` and gets SciPy's real function (the module imported at that read)."""
    code = """
import sys
import pandas as pd
from trueup.quality import gx_adapter
from trueup.quality.batch import prepare_batch
from trueup.quality.contracts.rules import Contract, Rule
from trueup.quality.gx_suites import GxValidator, build_suite
gx_adapter.import_gx()
rules = (Rule("v_present", "not_null", "v"), Rule("k_unique", "unique", "k"),
         Rule("c_iso", "in_set", "c", values=("USD",)), Rule("k_known", "in_reference", "k", reference="ks"),
         Rule("k_digits", "regex", "k", pattern=r"^[0-9]+$"), Rule("v_small", "between", "v", min_value=0.0, max_value=9.0),
         Rule("v_decimal", "decimal", "v", pattern=r"^-?[0-9]+(\\.[0-9]{1,2})?$"), Rule("v_ge_w", "a_gte_b", "v", other="w"))
contract = Contract(name="t.inbound", object="t", direction="inbound", version="0", key="k", rules=rules)
batch = prepare_batch(contract, pd.DataFrame({"v": ["1", "12", None], "w": ["0", "1", "2"], "k": ["1", "1", "x"],
                                              "c": ["USD", "EUR", None]}))
result = GxValidator().validate(build_suite(contract, {"ks": ["1"]}), batch, result_format="COMPLETE")
assert {r.expectation_config.meta["rule"]: r.result["unexpected_count"] for r in result.results} == {
    "v_present": 1, "k_unique": 2, "c_iso": 1, "k_known": 1, "k_digits": 1, "v_small": 1, "v_decimal": 0,
    "v_ge_w": 0}, result
stand_in = sys.modules["scipy.stats"]
assert type(stand_in).__name__ == "_ModuleOnFirstUse" and stand_in.__dict__["_module"] is None
import importlib.util
assert importlib.util.find_spec("scipy.stats").name == "scipy.stats"   # answered as for the module
assert stand_in.__dict__["_module"] is None
from great_expectations.expectations.core import expect_column_kl_divergence_to_be_less_than as kl
assert kl.stats.entropy([0.5, 0.5], [0.5, 0.5]) == 0.0
import scipy.stats
assert type(sys.modules["scipy.stats"]).__name__ == "module" and kl.stats.entropy is scipy.stats.entropy
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
