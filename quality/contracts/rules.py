"""A contract is a list of rules. Each rule becomes one Great Expectations expectation (the
contract of record, with GX's own counts) and one SQL predicate (which finds every failing
row — GX caps its failing-row lists). The two must agree, row count for row count; both come
from the rule's kind (quality/rule_kinds.py).

Rules speak about text columns as landed in `raw`; a numeric rule applies to the rows
whose text is a decimal (the `decimal` rule itself reports the ones that are not).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field

from ..rule_kinds import kind_of

DECIMAL_RE = r"^-?[0-9]+(\.[0-9]{1,2})?$"
EMAIL_RE = r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
ISO_CURRENCIES = ("USD", "EUR", "GBP", "CAD", "CHF", "JPY", "AUD", "SEK", "NOK", "DKK", "PLN", "CZK", "NZD",
                  "SGD", "HKD", "MXN", "BRL", "INR", "CNY", "ZAR")
ISO_COUNTRIES = ("US", "DE", "GB", "CA", "FR", "NL", "ES", "IT", "SE", "AU", "AT", "BE", "CH", "DK", "FI", "IE",
                 "NO", "PL", "PT", "CZ", "NZ", "JP", "SG", "HK", "MX", "BR", "IN", "CN", "ZA", "LU")


@dataclass(frozen=True)
class Rule:
    """One expectation. `kind` names its kind in quality/rule_kinds.KINDS:
    not_null, unique, in_set, regex, decimal, between (numeric), a_gte_b (dates/numbers as text
    sort the same way in ISO form), in_reference (values must exist in a reference key set)."""

    id: str
    kind: str
    column: str
    other: str | None = None            # a_gte_b: the column that must not be greater
    values: tuple[str, ...] = ()        # in_set
    pattern: str | None = None          # regex
    min_value: float | None = None      # between
    max_value: float | None = None
    reference: str | None = None        # in_reference: name of a reference key set
    when: tuple[str, str] | None = None  # only rows where column == value
    description: str = ""


@dataclass(frozen=True)
class Contract:
    name: str                 # the GX suite name, e.g. "crm_deals.inbound"
    object: str               # raw object name, e.g. "crm_deals"
    direction: str            # inbound | outbound
    version: str
    key: str                  # business key column
    rules: tuple[Rule, ...]
    block_threshold: float = 0.05   # failing share above which the whole batch is blocked
    # below this many rows a share is mostly noise (1 bad row in 20 is 5%): never block on it
    min_rows_to_block: int = 200
    money_column: str | None = None
    pii_columns: tuple[str, ...] = field(default=())

    def fingerprint(self) -> str:
        """Changes whenever a rule or the policy changes: a new fingerprint needs a new version."""
        body = {"rules": [asdict(r) for r in self.rules], "key": self.key,
                "block_threshold": self.block_threshold, "min_rows_to_block": self.min_rows_to_block}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]

    def rule(self, rule_id: str) -> Rule:
        return next(r for r in self.rules if r.id == rule_id)

    @property
    def rule_columns(self) -> list[str]:
        """Every column a rule reads (its own, the one it compares with, its condition's), once."""
        return list(dict.fromkeys(c for r in self.rules for c in kind_of(r).columns(r)))

    @property
    def references(self) -> set[str]:
        return {r.reference for r in self.rules if r.reference}
