"""Contracts as Great Expectations 1.x suites.

Great Expectations is imported only here and only when a gate runs (importing it costs
seconds): Definitions loading and the CLI never pay for it.
"""
from __future__ import annotations

import os
import threading

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


_CONFIGURATIONS = threading.local()   # per thread: expectation id → (expectation, its fields)


def configurations_once_per_validation() -> None:
    """GX builds an expectation's configuration from its fields (pydantic `.dict()`, recursive
    over every value of a `value_set`) each time it asks for it: ~80 times per validation. With
    a 5k-key reference that was 0.35 s per rule per validation whatever the rows (cProfile: 410k
    pydantic calls; two such rules over 250k rows: 0.73 s, 0.19 s read once). While
    `GxValidator.validate` runs, the fields are read once per expectation and every request
    gets a fresh configuration built from them, as GX builds it (the same type, kwargs, meta,
    notes, description, severity, id and rendered content; tests/test_contracts.py compares the
    two for every kind of rule). Outside a validation GX's own property runs unchanged."""
    from great_expectations.expectations.expectation import Expectation, FailureSeverity, camel_to_snake
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    original = Expectation.configuration
    if getattr(original.fget, "_trueup_once", False):
        return

    def configuration(self):
        cache = getattr(_CONFIGURATIONS, "fields", None)
        if cache is None:
            return original.fget(self)
        if id(self) not in cache:
            cache[id(self)] = (self, self.dict(exclude_defaults=True))   # the expectation pins its id
        kwargs = dict(cache[id(self)][1])
        meta = kwargs.pop("meta", None)
        notes = kwargs.pop("notes", None)
        description = kwargs.pop("description", None)
        severity = kwargs.pop("severity", FailureSeverity.CRITICAL)
        id_ = kwargs.pop("id", None)
        rendered_content = kwargs.pop("rendered_content", None)
        return ExpectationConfiguration(type=camel_to_snake(self.__class__.__name__), kwargs=kwargs, meta=meta,
                                        notes=notes, description=description, severity=severity, id=id_,
                                        rendered_content=rendered_content)

    configuration._trueup_once = True
    configuration.gx_own = original   # the benchmark's "GX as shipped" puts it back
    Expectation.configuration = property(configuration)


class GxValidator:
    """One ephemeral GX context reused for every batch of a gate run."""

    def __init__(self) -> None:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        skip_data_fingerprint()
        configurations_once_per_validation()

        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas("trueup_gate")
        self.batch_definition = source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")

    def validate(self, suite, df):
        batch = self.batch_definition.get_batch(batch_parameters={"dataframe": df})
        _CONFIGURATIONS.fields = {}
        try:
            return batch.validate(suite, result_format={"result_format": "BASIC"})
        finally:
            _CONFIGURATIONS.fields = None
