"""Contracts as Great Expectations 1.x suites.

Great Expectations is imported only here and only when a gate runs (importing it costs
seconds): Definitions loading and the CLI never pay for it.
"""
from __future__ import annotations

import os

from .batch import PARTITION, num_column
from .contracts.rules import Contract, Rule

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def expectation(rule: Rule, references: dict[str, list[str]]):
    import great_expectations.expectations as gxe

    meta = {"rule": rule.id, "description": rule.description}
    cond = {}
    if rule.when:
        col, value = rule.when
        cond = {"row_condition": f'{col}=="{value}"', "condition_parser": "pandas"}
    k = rule.kind
    if k == "not_null":
        return gxe.ExpectColumnValuesToNotBeNull(column=rule.column, meta=meta, **cond)
    if k == "unique":
        # unique within each day's batch: one GX validation covers a whole backfill range
        return gxe.ExpectCompoundColumnsToBeUnique(column_list=[PARTITION, rule.column],
                                                   ignore_row_if="any_value_is_missing", meta=meta, **cond)
    if k == "in_set":
        return gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=list(rule.values), meta=meta, **cond)
    if k == "in_reference":
        return gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=references[rule.reference],
                                               meta=meta, **cond)
    if k in ("regex", "decimal"):
        return gxe.ExpectColumnValuesToMatchRegex(column=rule.column, regex=rule.pattern, meta=meta, **cond)
    if k == "between":
        return gxe.ExpectColumnValuesToBeBetween(column=num_column(rule.column), min_value=rule.min_value,
                                                 max_value=rule.max_value, meta=meta, **cond)
    if k == "a_gte_b":
        return gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=rule.column, column_B=rule.other,
                                                           or_equal=True, ignore_row_if="either_value_is_missing",
                                                           meta=meta, **cond)
    raise ValueError(f"unknown rule kind {k!r} in rule {rule.id}")


def build_suite(contract: Contract, references: dict[str, list[str]], rules: list[Rule] | None = None):
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=contract.name, meta={
        "version": contract.version, "fingerprint": contract.fingerprint(), "object": contract.object,
        "direction": contract.direction, "block_threshold": contract.block_threshold})
    for rule in rules if rules is not None else contract.rules:
        suite.add_expectation(expectation(rule, references))
    return suite


def skip_data_fingerprint() -> None:
    """GX fingerprints every pandas batch below 1 GB (md5 over `hash_pandas_object`, a batch
    marker in the result's metadata) and skips it above: the hashing was 60 % of a 250k-row
    chunk's validation (0.37 of 0.61 s, cProfile) while one 5M-row frame skipped it. The gate
    reads only GX's counts, so its batches are not fingerprinted at any size: what GX checks
    and counts is unchanged. (A module constant of GX's pandas engine; if a GX release drops
    it, batches are hashed again — slower, still correct; tests/test_contracts.py notices.)"""
    from great_expectations.execution_engine import pandas_execution_engine

    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        pandas_execution_engine.HASH_THRESHOLD = 0


class GxValidator:
    """One ephemeral GX context reused for every batch of a gate run."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        skip_data_fingerprint()

        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas("trueup_gate")
        self.batch_definition = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")

    def validate(self, suite, df):
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": df})
        return batch.validate(suite, result_format={"result_format": "BASIC"})
