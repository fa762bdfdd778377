"""Planning FX rates, USD per unit of each currency. One source for the whole platform: the dbt
seed dbt_project/seeds/marts/fx_rates.csv, which the marts join and Python reads here (publish
approval thresholds, the reconciliation's recon.fx_rates)."""
from __future__ import annotations

import csv
from pathlib import Path

RATES_CSV = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds" / "marts" / "fx_rates.csv"


def _load(path: Path) -> dict[str, float]:
    with path.open(newline="") as f:
        return {row["currency"].strip(): float(row["rate_to_usd"]) for row in csv.DictReader(f)}


FX_TO_USD: dict[str, float] = _load(RATES_CSV)
