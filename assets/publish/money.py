"""Conversion to the reporting currency for thresholds, at the platform's planning rates
(assets/fx.py: the same rates the marts and the reconciliation use)."""
from trueup.assets.fx import FX_TO_USD


def to_reporting(amount: float, currency: str, reporting: str = "USD") -> float:
    usd = amount * FX_TO_USD.get(currency, 1.0)
    return usd / FX_TO_USD.get(reporting, 1.0)
