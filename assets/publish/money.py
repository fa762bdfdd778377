"""Conversion to the reporting currency for thresholds (fixed demo rates; a rates table in
production would replace this one mapping)."""
FX_TO_USD = {"USD": 1.0, "EUR": 1.08, "GBP": 1.27, "CAD": 0.73, "CHF": 1.13, "JPY": 0.0067, "AUD": 0.66,
             "SEK": 0.095, "NOK": 0.093, "DKK": 0.145}


def to_reporting(amount: float, currency: str, reporting: str = "USD") -> float:
    usd = amount * FX_TO_USD.get(currency, 1.0)
    return usd / FX_TO_USD.get(reporting, 1.0)
