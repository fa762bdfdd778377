"""Reconciliation settings: tolerances, SLAs, alert limits and the reporting-currency rates.

Every value can be overridden per reconciliation through the asset's Dagster config
(`ReconConfig`) or a plain dict passed to `run_reconciliation`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

# Units of USD per unit of currency (fixed planning rates; recon.fx_rates is seeded from here
# once and may be edited by finance afterwards — the table, not this map, is what runs use).
FX_TO_USD: dict[str, float] = {
    "USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CAD": 0.73, "AUD": 0.66, "CHF": 1.12, "JPY": 0.0067,
    "SEK": 0.095, "NOK": 0.094, "DKK": 0.145, "MXN": 0.058, "BRL": 0.20, "INR": 0.012, "SGD": 0.74,
}


@dataclass(frozen=True)
class ReconSettings:
    tolerance: float = 0.01             # absolute, in the document currency
    order_sla_days: int = 2             # a closed-won deal without an ERP order after this → missing_in_erp
    match_window_days: int = 7          # unlinked order ↔ deal pairing, and duplicate detection
    invoice_sla_days: int = 7           # an order with no invoice after this → not_invoiced
    invoice_complete_days: int = 14     # under-invoiced orders are breaks only after this
    customer_sla_days: int = 7          # a CRM customer company without ERP customer after this
    money_at_risk_limit: float = 250_000.0  # check fails (ERROR) above this, in reporting currency
    reporting_currency: str = "USD"

    @classmethod
    def from_dict(cls, d: dict | None) -> "ReconSettings":
        known = {f.name for f in fields(cls)}
        unknown = set(d or {}) - known
        if unknown:
            raise ValueError(f"unknown reconciliation settings: {sorted(unknown)}")
        return replace(cls(), **{k: v for k, v in (d or {}).items() if v is not None})
