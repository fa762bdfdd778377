"""Reconciliation settings: tolerances, SLAs, alert limits and the reporting-currency rates.

Every value can be overridden per reconciliation through the asset's Dagster config
(`ReconConfig`) or a plain dict passed to `run_reconciliation`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

# USD per unit of currency, the platform's planning rates (assets/fx.py, the dbt seed):
# recon.fx_rates is seeded from them once and may be edited by finance afterwards — the table,
# not this map, is what runs use
from trueup.assets.fx import FX_TO_USD  # noqa: F401 - re-exported for recon.store


@dataclass(frozen=True)
class ReconSettings:
    tolerance: float = 0.01             # absolute, in the document currency
    order_sla_days: int = 2             # a closed-won deal without an ERP order after this → missing_in_erp
    match_window_days: int = 7          # unlinked order ↔ deal pairing, and duplicate detection
    probable_amount_pct: float = 0.25   # an unlinked order this close to a deal's amount (same customer) is
                                        # its mistyped order: one amount_mismatch, not two missing records
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
