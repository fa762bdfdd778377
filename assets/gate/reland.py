"""Rows read again from their source after the day's ingest — publish's read-back of the ERP rows it
created, a quarantine replay's current values — join raw and pass the gate like any batch.
One sequence for both: land (merged by key and version) → evaluate the contract → persist the
results as their own batch kind, so the day's error rate does not count them."""
from __future__ import annotations

import pandas as pd

from trueup.assets.ingest.objects import ALL_OBJECTS
from trueup.assets.ingest.raw_store import land_partitions
from trueup.connectors.warehouse import Warehouse
from trueup.quality.contracts.rules import Contract
from trueup.quality.gate import evaluate_partitions
from trueup.quality.references import load_references
from trueup.quality.store import persist_gates


def land_and_gate(wh: Warehouse, contract: Contract, rows: pd.DataFrame, *, run_id: str, source_label: str,
                  batch: str, validator=None) -> dict:
    """Land `rows` (a re-read with its `_partition`) in raw and gate them; returns the gate outcome
    per partition. `batch`: the gate_results batch kind (quality.store.BATCH_KINDS)."""
    land_partitions(wh, ALL_OBJECTS[contract.object], {}, run_id, lambda _p: source_label, earlier=rows)
    outcomes = evaluate_partitions(contract, rows, load_references(wh, contract.references), validator)
    persist_gates(wh, outcomes, run_id, replace_partition=False, batch=batch)
    return outcomes
