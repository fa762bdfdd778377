"""Replay: re-read the current source values of open quarantined rows, re-validate them
against the current contract, release those that now pass (into validated, and so into
publishing) and count another attempt for those that still fail."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from trueup.assets.gate.reland import land_and_gate
from trueup.assets.ingest.objects import ALL_OBJECTS
from trueup.assets.ingest.reread import reread
from trueup.connectors.warehouse import Warehouse
from trueup.quality.contracts import INBOUND
from trueup.quality.store import count_attempts, open_quarantine, quarantine_id, resolve


@dataclass
class ReplaySummary:
    released: dict[str, int] = field(default_factory=dict)
    still_open: dict[str, int] = field(default_factory=dict)
    deleted_at_source: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        r, o, d = sum(self.released.values()), sum(self.still_open.values()), sum(self.deleted_at_source.values())
        return f"{r} released, {o} still failing, {d} deleted at the source (discarded)"


def replay_quarantine(wh: Warehouse, *, run_id: str, tz: str, reports_dir: Path, crm=None, erp_engine=None,
                      actor: str = "replay", validator=None) -> ReplaySummary:
    summary = ReplaySummary()
    open_rows = open_quarantine(wh)
    for contract in INBOUND.values():
        keys = open_rows.loc[open_rows["contract"] == contract.name, "business_key"].tolist()
        if not keys:
            continue
        current = reread(contract.object, keys, tz=tz, wh=wh, crm=crm, erp_engine=erp_engine)
        obj = ALL_OBJECTS[contract.object]
        # a record deleted at the source needs nothing any more: discarded, and the reason recorded
        deleted = set(keys) - set(current.get(contract.key, pd.Series(dtype=object)).astype(str))
        if "archived" in current.columns:
            deleted |= set(current.loc[current["archived"] == "true", contract.key].astype(str))
            current = current[current["archived"] != "true"]
        if deleted:
            resolve(wh, [quarantine_id(contract.name, k) for k in deleted], "discarded", actor,
                    "deleted at the source", run_id)
        summary.deleted_at_source[contract.name] = len(deleted)
        if current.empty:
            continue
        # the re-read version joins raw (merged by key and version), so raw and validated agree
        outcomes = land_and_gate(wh, contract, current, run_id=run_id, batch="replay",
                                 source_label=f"replay:{obj.source_name}", validator=validator)
        failing = [str(k) for o in outcomes.values() for k in o.quarantined[contract.key]]
        count_attempts(wh, contract.name, failing, run_id, actor)
        summary.released[contract.name] = sum(o.rows_passed for o in outcomes.values())
        summary.still_open[contract.name] = len(failing)
    return summary
