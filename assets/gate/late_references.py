"""Rows held back only for a reference that had not landed yet: released once it has.

A row fails a reference rule (`in_reference`: a contact's or a deal's company, a payment's
invoice) when the record it names is not in the warehouse. Usually that record does not exist
at the source either: a real defect, quarantined until someone fixes or discards it. But the
record may exist and simply not have landed yet, because it changed again after the referencing
row's day and so its own day's walk did not return it: a backfill over a CRM that has moved on,
or a company edited between midnight and the night's run. Nothing is wrong with such a row, yet
it would wait in quarantine for a manual replay, and a closed-won deal among them would never
become an ERP order.

After each gate, `recheck_late_references` takes the contract's open entries that failed only
reference rules, the quarantined version as it is in raw (nothing is re-read from the source),
and checks their references as they are now. Rows whose references all resolve go through the
whole contract again (gate batch kind `recheck`, so the day's error rate is unchanged) and, if
they pass, into validated and out of quarantine ("passed on <run>"). The others are left as they
are: not another attempt, not seen again."""
from __future__ import annotations

import json

import pandas as pd

from trueup.assets.ingest.objects import ALL_OBJECTS
from trueup.connectors.warehouse import Warehouse, ident
from trueup.quality.contracts.rules import Contract
from trueup.quality.gate import evaluate_partitions
from trueup.quality.references import present_references
from trueup.quality.store import persist_gates


def recheck_late_references(wh: Warehouse, contract: Contract, run_id: str, validator=None) -> int:
    """Release the contract's rows that were quarantined only for references that now resolve;
    returns how many were released."""
    reference_rules = [r for r in contract.rules if r.reference]
    if not reference_rules:
        return 0
    held = _held_for_references(wh, contract, {r.id for r in reference_rules})
    if held.empty:
        return 0
    resolves = pd.Series(True, index=held.index)
    references: dict[str, set[str]] = {}
    for rule in reference_rules:
        values = held[rule.column] if rule.column in held.columns else pd.Series(None, index=held.index)
        named = values.dropna().astype(str)
        present = present_references(wh, rule.reference, sorted(set(named)))
        references[rule.reference] = references.get(rule.reference, set()) | present
        resolves &= values.isna() | values.astype(str).isin(present)
    ready = held[resolves]
    if ready.empty:
        return 0
    # the keys these rows name are all the reference sets need to hold for them
    outcomes = evaluate_partitions(contract, ready.reset_index(drop=True),
                                   {name: sorted(keys) for name, keys in references.items()}, validator)
    persist_gates(wh, outcomes, run_id, replace_partition=False, batch="recheck")
    return sum(o.rows_passed for o in outcomes.values())


def _held_for_references(wh: Warehouse, contract: Contract, reference_rule_ids: set[str]) -> pd.DataFrame:
    """The raw rows of open entries whose failures were all reference rules, in the version
    that was quarantined (a record's newer version is its own day's gate's to judge). Raw is read
    by those entries' keys only (with no such entry, not at all): the current view's window is
    partitioned by the key, so the lookup never ranks the whole table."""
    entries = wh.query_df("SELECT business_key, failed_expectations, record_version FROM quality.quarantine "
                          "WHERE status = 'open' AND contract = :c", {"c": contract.name})
    only_references = [bool(failed) and set(failed) <= reference_rule_ids
                       for failed in (json.loads(f or "[]") for f in entries["failed_expectations"])]
    entries = entries[only_references] if len(entries) else entries
    if entries.empty:
        return entries
    obj = ALL_OBJECTS[contract.object]
    version = dict(zip(entries["business_key"].astype(str), entries["record_version"].astype(str)))
    rows = wh.query_df_by_keys(f"SELECT * FROM raw.{ident(obj.current_view)} WHERE {ident(contract.key)} IN :keys",
                               sorted(version))
    same = [version.get(str(k)) == str(u) for k, u in zip(rows[contract.key], rows[obj.modified])]
    return rows[same].reset_index(drop=True)
