"""The kinds of rule a contract is made of, each one class: the columns a rule of it reads, the
SQL that is true exactly on the rows that fail it (the gate's row-level evaluation,
quality/evaluate.py) and its Great Expectations 1.x expectation (the contract of record,
quality/gx_suites.py). The gate proves the two count the same failures, rule by rule, so
they are written side by side here.

A rule's `kind` (quality/contracts/rules.py) is the name of its kind in KINDS. Adding a kind
is one class here: the gate, GX's worker and the batch preparation ask it, never its name.
"""
from __future__ import annotations

import abc
import enum
from typing import TYPE_CHECKING

from .columns import PARTITION, num_column, quote
from .gx_adapter import import_gx

if TYPE_CHECKING:
    from .contracts.rules import Rule


class Scope(enum.Enum):
    """What a row's verdict depends on besides the row, and so how much of the batch the gate
    and GX's worker must see at once."""

    ROW = "row"              # the row alone: any piece of rows will do
    REFERENCE = "reference"  # a reference key set: GX validates few large slices, each with the keys it uses
    DAY = "day"              # the other rows of its day: duplicates are found over the whole batch


# the tables the SQL predicates read, registered beside the batch by the evaluator
def value_set_table(rule_id: str) -> str:
    return f"set_{rule_id}"


def reference_table(reference: str) -> str:
    return f"ref_{reference}"


def duplicated_values_table(rule_id: str) -> str:
    """(p, v): the (day, value) pairs found more than once in the whole batch."""
    return f"dup_{rule_id}"


class RuleKind(abc.ABC):
    name: str = ""
    scope: Scope = Scope.ROW

    # -- columns ---------------------------------------------------------------------------
    def columns(self, rule: Rule) -> list[str]:
        """The batch's columns the rule reads: its own, the one it compares with, its condition's."""
        return [c for c in (rule.column, rule.other, rule.when[0] if rule.when else None) if c]

    def numeric_shadow(self, rule: Rule) -> str | None:
        """The numeric column the prepared batch must carry for the rule (its column's text as
        a number where it is a plain decimal), or None."""
        return None

    def gx_columns(self, rule: Rule) -> list[str]:
        """The prepared batch's columns GX reads for the rule (a shadow instead of its text)."""
        cols = [self.numeric_shadow(rule) or rule.column]
        if rule.other:
            cols.append(rule.other)
        if rule.when:
            cols.append(rule.when[0])
        return cols

    def lookup_tables(self, rule: Rule) -> dict[str, list[str]]:
        """Tables of values the rule's predicate reads, by name (reference key sets are the
        contract's, registered once for all its rules)."""
        return {}

    # -- the gate's SQL --------------------------------------------------------------------
    def predicate(self, rule: Rule, chunked: bool = False) -> str:
        """SQL over the prepared batch (`batch`) that is TRUE exactly when a row fails the rule,
        with GX's null handling: a rule with a condition only judges the rows that meet it, and
        a NULL verdict passes. `chunked`: the batch comes in chunks, so a rule over the whole
        day reads what was found over the whole batch up front."""
        p = self.fails(rule, chunked)
        if rule.when:
            col, value = rule.when
            p = f"coalesce({quote(col)} = '{value}', false) AND ({p})"
        return f"coalesce({p}, false)"

    @abc.abstractmethod
    def fails(self, rule: Rule, chunked: bool) -> str:
        """The kind's own failure condition in SQL (before the condition and NULL handling)."""

    # -- GX ----------------------------------------------------------------------------------
    def expectation(self, rule: Rule, references: dict[str, list[str]]):
        """The rule as a GX expectation; its meta carries the rule's id (GX's results are read
        back by it) and description."""
        gxe = import_gx().expectations
        common = {"meta": {"rule": rule.id, "description": rule.description}}
        if rule.when:
            col, value = rule.when
            common.update(row_condition=f'{col}=="{value}"', condition_parser="pandas")
        return self.gx_expectation(gxe, rule, references, common)

    @abc.abstractmethod
    def gx_expectation(self, gxe, rule: Rule, references: dict[str, list[str]], common: dict):
        """The kind's GX expectation class built with `common` (meta, row condition)."""


class NotNull(RuleKind):
    name = "not_null"

    def fails(self, rule, chunked):
        return f"{quote(rule.column)} IS NULL"

    def gx_expectation(self, gxe, rule, references, common):
        return gxe.ExpectColumnValuesToNotBeNull(column=rule.column, **common)


class Unique(RuleKind):
    """Unique within each day's batch, so one GX validation covers a whole backfill range."""

    name = "unique"
    scope = Scope.DAY

    def gx_columns(self, rule):
        return [*super().gx_columns(rule), PARTITION]

    def fails(self, rule, chunked):
        c = quote(rule.column)
        if chunked:
            return (f"{c} IS NOT NULL AND EXISTS (SELECT 1 FROM {duplicated_values_table(rule.id)} d "
                    f"WHERE d.p = batch.{quote(PARTITION)} AND d.v = batch.{c})")
        return f"{c} IS NOT NULL AND count(*) OVER (PARTITION BY {quote(PARTITION)}, {c}) > 1"

    def gx_expectation(self, gxe, rule, references, common):
        return gxe.ExpectCompoundColumnsToBeUnique(column_list=[PARTITION, rule.column],
                                                   ignore_row_if="any_value_is_missing", **common)


class InSet(RuleKind):
    name = "in_set"

    def lookup_tables(self, rule):
        return {value_set_table(rule.id): list(rule.values)}

    def fails(self, rule, chunked):
        c = quote(rule.column)
        return f"{c} IS NOT NULL AND {c} NOT IN (SELECT v FROM {value_set_table(rule.id)})"

    def gx_expectation(self, gxe, rule, references, common):
        return gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=list(rule.values), **common)


class InReference(RuleKind):
    """The value must be one of a reference key set's (`rule.reference`), e.g. known company ids."""

    name = "in_reference"
    scope = Scope.REFERENCE

    def fails(self, rule, chunked):
        c = quote(rule.column)
        return f"{c} IS NOT NULL AND {c} NOT IN (SELECT v FROM {reference_table(rule.reference)})"

    def gx_expectation(self, gxe, rule, references, common):
        return gxe.ExpectColumnValuesToBeInSet(column=rule.column, value_set=references[rule.reference], **common)


class Regex(RuleKind):
    name = "regex"

    def fails(self, rule, chunked):
        return f"{quote(rule.column)} IS NOT NULL AND NOT {_matches(rule.column, rule.pattern)}"

    def gx_expectation(self, gxe, rule, references, common):
        return gxe.ExpectColumnValuesToMatchRegex(column=rule.column, regex=rule.pattern, **common)


class DecimalText(Regex):
    """A regex rule whose pattern is a plain decimal (rules.DECIMAL_RE): reported apart, as the
    range rules of the same column judge only the rows that pass it."""

    name = "decimal"


class Between(RuleKind):
    """A numeric range over the rows whose text is a plain decimal (read as the numeric shadow)."""

    name = "between"

    def numeric_shadow(self, rule):
        return num_column(rule.column)

    def fails(self, rule, chunked):
        n = quote(self.numeric_shadow(rule))
        return f"{n} IS NOT NULL AND ({n} < {float(rule.min_value)!r} OR {n} > {float(rule.max_value)!r})"

    def gx_expectation(self, gxe, rule, references, common):
        return gxe.ExpectColumnValuesToBeBetween(column=self.numeric_shadow(rule), min_value=rule.min_value,
                                                 max_value=rule.max_value, **common)


class AGreaterOrEqualB(RuleKind):
    """`column` ≥ `other` where both are present (ISO dates and times as text sort as they are)."""

    name = "a_gte_b"

    def fails(self, rule, chunked):
        c, o = quote(rule.column), quote(rule.other)
        return f"{c} IS NOT NULL AND {o} IS NOT NULL AND {c} < {o}"

    def gx_expectation(self, gxe, rule, references, common):
        return gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A=rule.column, column_B=rule.other, or_equal=True,
                                                           ignore_row_if="either_value_is_missing", **common)


def _matches(col: str, pattern: str) -> str:
    # Python's `$` (used by GX on pandas) also matches before one trailing newline; RE2's
    # does not, so drop one trailing newline before matching to keep the two in agreement
    # (only where there is one: rewriting every value cost 0.05 s per rule per 1M rows)
    c = quote(col)
    text = f"CASE WHEN ends_with({c}, chr(10)) THEN regexp_replace({c}, '\\n$', '') ELSE {c} END"
    return f"regexp_matches({text}, '{pattern.replace(chr(39), chr(39) * 2)}')"


KINDS: dict[str, RuleKind] = {k.name: k for k in (NotNull(), Unique(), InSet(), InReference(), Regex(), DecimalText(),
                                                  Between(), AGreaterOrEqualB())}


def kind_of(rule: Rule) -> RuleKind:
    try:
        return KINDS[rule.kind]
    except KeyError:
        raise ValueError(f"unknown rule kind {rule.kind!r} in rule {rule.id}") from None


def rules_of_scope(rules, scope: Scope) -> list[Rule]:
    return [r for r in rules if kind_of(r).scope is scope]
