"""Contracts as Great Expectations 1.x suites, and the validator the gate runs them with.

Great Expectations is imported only when a gate runs (importing it costs seconds), through
quality/gx_adapter.py: Definitions loading and the CLI never pay for it. Each rule's
expectation comes from its kind (quality/rule_kinds.py).
"""
from __future__ import annotations

from . import gx_adapter
from .contracts.rules import Contract, Rule
from .rule_kinds import kind_of


def expectation(rule: Rule, references: dict[str, list[str]]):
    return kind_of(rule).expectation(rule, references)


def build_suite(contract: Contract, references: dict[str, list[str]], rules: list[Rule] | None = None):
    gx = gx_adapter.import_gx()

    suite = gx.ExpectationSuite(name=contract.name, meta={
        "version": contract.version, "fingerprint": contract.fingerprint(), "object": contract.object,
        "direction": contract.direction, "block_threshold": contract.block_threshold})
    for rule in rules if rules is not None else contract.rules:
        suite.add_expectation(expectation(rule, references))
    return suite


class GxValidator:
    """One ephemeral GX context reused for every batch of a gate run."""

    def __init__(self) -> None:
        gx = gx_adapter.import_gx()
        gx_adapter.adjust()

        self.context = gx.get_context(mode="ephemeral")
        gx_adapter.quiet_progress_bars(self.context)
        source = self.context.data_sources.add_pandas("trueup_gate")
        self.batch_definition = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")

    def validate(self, suite, df, result_format: str = "BASIC"):
        """GX's result for `df` (the gate reads counts, so BASIC; tests may ask for COMPLETE)."""
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": df})
        with gx_adapter.one_validation():
            return batch.validate(suite, result_format={"result_format": result_format})
