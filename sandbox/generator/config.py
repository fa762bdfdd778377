"""What a generated world looks like: size, dates and the rates of injected defects."""
from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field

# Per-day arrival rates at scale 1.0 (a small B2B company): ~250 companies, ~500 contacts
# and ~600 deals over a two-month history.
BASE_COMPANIES_PER_DAY = 4.0
BASE_CONTACTS_PER_DAY = 8.0
BASE_DEALS_PER_DAY = 10.0

DEFAULT_DEFECT_RATES: dict[str, float] = {
    # invalid CRM rows (inbound contract failures)
    "missing_amount": 0.015,        # closed-won deal without amount
    "negative_amount": 0.005,       # deal with a negative amount
    "unknown_currency": 0.005,      # deal with a currency that is not ISO-4217
    "missing_company": 0.015,       # closed-won deal without an associated company
    "malformed_email": 0.012,       # contact email that is not an address
    "duplicate_contact": 0.005,     # contact re-keyed with another contact's email
    "orphan_contact": 0.005,        # contact pointing at a company that does not exist
    # deletes
    "deleted_contact": 0.02,
    "deleted_deal": 0.02,          # open or lost deals archived in the CRM
    # manual order entry before go-live (and stray manual entry after it)
    "unlinked_manual_order": 0.15,  # clerk did not type the deal id (not a defect by itself)
    "missing_order": 0.04,         # closed-won deal never entered in the ERP
    "amount_mismatch": 0.04,       # clerk mistyped the amount
    "currency_mismatch": 0.01,     # clerk picked the wrong currency
    "duplicate_order": 0.01,       # clerk keyed the order twice (second one unlinked)
    "manual_order_after_golive": 0.03,  # a clerk keyed an order the platform should create
    # ERP customers keyed by clerks
    "customer_name_mismatch": 0.03,
    "customer_country_mismatch": 0.02,
    # billing (decided by the ERP billing simulator)
    "not_invoiced": 0.02,
    "invoice_amount_mismatch": 0.02,
    "unpaid": 0.05,
    "underpaid": 0.02,
    "overpaid": 0.02,
    "orphan_payment": 0.08,        # per export day: the export carries a payment for no invoice
}


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 7
    scale: float = 1.0
    start_date: dt.date = dt.date(2026, 9, 1)
    days: int = 61
    golive_date: dt.date | None = None    # default: the middle of the history
    defect_rates: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_DEFECT_RATES))
    # export days whose files drift from the contract: (day index, kind)
    schema_drift_days: tuple[tuple[int, str], ...] | None = None
    # billing: the share of orders invoiced in parts (over a week) and of invoices paid in
    # instalments (over ten days), and the most parts either is cut into (2..9: a part is one
    # digit of the document number). Scale benchmarks raise them for an ERP-heavy book.
    split_rate: float = 0.15
    instalment_rate: float = 0.1
    billing_parts: int = 2

    def __post_init__(self):
        if not 2 <= self.billing_parts <= 9:
            raise ValueError(f"billing_parts must be 2..9 (one digit of a document number), not {self.billing_parts}")

    @property
    def golive(self) -> dt.date:
        return self.golive_date or self.start_date + dt.timedelta(days=self.days // 2)

    @property
    def drift_days(self) -> dict[int, str]:
        if self.schema_drift_days is not None:
            return dict(self.schema_drift_days)
        # one renamed column and one retyped column, late in the history
        return {int(self.days * 0.7): "renamed_column", int(self.days * 0.8): "retyped_column"}

    def rate(self, kind: str) -> float:
        return float(self.defect_rates.get(kind, 0.0))

    def to_json(self) -> dict:
        d = asdict(self)
        d["start_date"] = self.start_date.isoformat()
        d["golive_date"] = self.golive.isoformat()
        d["schema_drift_days"] = [list(x) for x in self.drift_days.items()]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "WorldConfig":
        return cls(
            seed=int(d["seed"]),
            scale=float(d["scale"]),
            start_date=dt.date.fromisoformat(d["start_date"]),
            days=int(d["days"]),
            golive_date=dt.date.fromisoformat(d["golive_date"]) if d.get("golive_date") else None,
            defect_rates=dict(d.get("defect_rates") or DEFAULT_DEFECT_RATES),
            schema_drift_days=tuple(tuple(x) for x in d["schema_drift_days"])
            if d.get("schema_drift_days") is not None else None,
            # worlds recorded before these knobs existed have the defaults
            split_rate=float(d.get("split_rate", cls.split_rate)),
            instalment_rate=float(d.get("instalment_rate", cls.instalment_rate)),
            billing_parts=int(d.get("billing_parts", cls.billing_parts)),
        )
