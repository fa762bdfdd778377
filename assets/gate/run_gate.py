"""Gate one partition of one object: read raw, evaluate, persist. No Dagster here."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from connectors.warehouse import Warehouse, ident
from quality.contracts.rules import Contract
from quality.gate import GateOutcome, evaluate_batch, evaluate_partitions
from quality.references import load_references
from quality.reports import write_gate_report
from quality.store import persist_gates


def read_partitions(wh: Warehouse, obj: str, key: str, first: str, last: str) -> pd.DataFrame:
    """Rows of partitions first..last; if a record has two versions in one day, the later one."""
    with wh.begin() as conn:
        if not wh.table_columns(conn, "raw", obj):
            return pd.DataFrame()
        df = wh.read_df(conn, f"SELECT * FROM raw.{ident(obj)} WHERE _partition >= :a AND _partition <= :b",
                        {"a": first, "b": last})
    if df.empty:
        return df
    return (df.sort_values(["updated_at", "_loaded_at"], na_position="first")
              .drop_duplicates(subset=["_partition", key], keep="last").reset_index(drop=True))


def gate_partitions(wh: Warehouse, contract: Contract, partitions: list[str], run_id: str, reports_dir: Path,
                    validator=None) -> dict[str, tuple[GateOutcome, Path]]:
    """Gate every partition in `partitions` (a contiguous range) with one validation."""
    rows = read_partitions(wh, contract.object, contract.key, min(partitions), max(partitions))
    references = load_references(wh, contract.references)
    if rows.empty:
        # no rows yet: keep the object's full column set, so validated tables and views have it
        from assets.ingest.objects import ALL_OBJECTS

        columns = list(rows.columns) or list(ALL_OBJECTS[contract.object].columns)
        rows = pd.DataFrame(columns=list(dict.fromkeys([*columns, "_partition"])))
    outcomes = evaluate_partitions(contract, rows, references, validator=validator)
    for p in partitions:  # a day with no rows still gets its (empty) gate result
        if p not in outcomes:
            outcomes[p] = evaluate_batch(contract, rows.iloc[:0].drop(columns=["_partition"]), references,
                                         validator=validator)
    persist_gates(wh, {p: outcomes[p] for p in partitions}, run_id)
    return {p: (outcomes[p], write_gate_report(reports_dir, outcomes[p], p, run_id)) for p in partitions}
