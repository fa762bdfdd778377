"""CRM write-backs: the ERP order number onto the deal, the ERP customer number onto the
company — batch updates by record id (an upsert by the unique property would create a new
company, since the company does not carry the number yet).

207 partial failures are handled per input; a batch whose outcome is unknown (timeout,
dropped connection) is resolved on the next run by reading the records back."""
from __future__ import annotations

import json

from trueup.connectors.errors import SyncError
from trueup.connectors.warehouse import Warehouse

from .ledger import Write, pending, set_state


#: per ERP object: the CRM object written back to, its write-back's key prefix, the CRM property
#: and the ERP number it carries (the key is <prefix><CRM record id>:<property>)
WRITEBACKS = {"sales_orders": ("deals", "crm-deal:", "erp_order_number", "order_number"),
              "customers": ("companies", "crm-company:", "erp_customer_number", "customer_number")}


def writeback_writes(wh: Warehouse, source_object: str) -> list[Write]:
    """One CRM update per confirmed ERP create (order → deal, customer → company) whose write-back
    is not confirmed already with the same number. A write-back's payload is the CRM record id and
    that number, so "same key, same number" is "same payload": the ledger would skip it anyway.
    A night plans the write-backs of what is new, not of every order since go-live."""
    target, prefix, prop, number = WRITEBACKS[source_object]
    df = wh.query_df(
        "SELECT e.business_key, e.payload FROM ops.sor_writes e WHERE e.target_system = 'erp' AND "
        "e.target_object = :t AND e.state = 'confirmed' AND NOT EXISTS (SELECT 1 FROM ops.sor_writes c "
        "WHERE c.target_system = 'crm' AND c.state = 'confirmed' AND c.idempotency_key = :prefix || e.business_key "
        f"|| :suffix AND c.business_key = {wh.json_text('e.payload', number)})",
        {"t": source_object, "prefix": prefix, "suffix": f":{prop}"})
    out = []
    for crm_id, payload in zip(df["business_key"], df["payload"]):
        value = json.loads(payload)[number]
        out.append(Write(f"{prefix}{crm_id}:{prop}", "crm", target, "update", value,
                         {"id": crm_id, "properties": {prop: value}}))
    return out


def resolve_pending_crm(wh: Warehouse, client, target_object: str, run_id: str) -> int:
    rows = pending(wh, target_object)
    rows = rows[rows["target_system"] == "crm"]
    if rows.empty:
        return 0
    payloads = [json.loads(p) for p in rows["payload"]]
    props = sorted({k for p in payloads for k in p["properties"]})
    current: dict[str, dict] = {}
    by_id = [p["id"] for p in payloads if "id_property" not in p]
    by_unique = [p["id"] for p in payloads if "id_property" in p]
    for r in client.batch_read(target_object, by_id, props) if by_id else []:
        current[str(r["id"])] = r.get("properties") or {}
    if by_unique:
        prop = next(p["id_property"] for p in payloads if "id_property" in p)
        for r in client.batch_read(target_object, by_unique, props, id_property=prop):
            current[str((r.get("properties") or {}).get(prop))] = r.get("properties") or {}
    done, redo = [], []
    for wid, p, state in zip(rows["write_id"], payloads, rows["state"]):
        have = current.get(str(p["id"]), {})
        if all(have.get(k) == v for k, v in p["properties"].items()):
            done.append(wid)
        elif state != "planned":
            redo.append(wid)
    set_state(wh, done, "confirmed", run_id)
    set_state(wh, redo, "planned", run_id, error="not applied in the CRM on read-back; will send")
    return len(done)


def send_crm(wh: Warehouse, client, writes: list[Write], run_id: str, down: SyncError | None = None) -> dict[str, int]:
    """Send CRM writes in batches of 100. Per input: acknowledged in the answer → `confirmed`;
    refused by the target with a reason (a 4xx, or an input a 207 names) → `rejected`, final;
    not mentioned in a 2xx answer, or the batch's outcome unknown → `unknown`, read back by the
    next run. A transient failure that outlived the client's retries (refused connection, 5xx,
    429) leaves the batch `planned` with `failing_since` kept, for later runs — and the writes
    not sent yet wait too: once the target is down (or `down` says it already is), this run
    stops calling it."""
    counts = {"confirmed": 0, "rejected": 0, "unknown": 0, "deferred": 0}
    by_obj: dict[tuple[str, str], list[Write]] = {}
    for w in writes:
        by_obj.setdefault((w.target_object, w.operation), []).append(w)
    confirmed = _Confirmations(wh, run_id)
    try:
        down = _send_batches(wh, client, by_obj, run_id, down, counts, confirmed)
    finally:
        confirmed.flush()   # what the CRM acknowledged, also when this run stops early
    counts["down"] = down   # type: ignore[assignment]  — the failure that stopped this run's sending, if any
    return counts


class _Confirmations:
    """`confirmed` transitions, recorded CONFIRM_EVERY writes at a time rather than per batch of
    100: the ledger's work per batch then fits in the ~100 ms the rate limit leaves between two
    requests. Safe because `sent` is recorded before every request: a write the CRM applied whose
    confirmation a crash lost is still `sent`, and the next run reads it back (resolve_pending_crm)."""

    def __init__(self, wh: Warehouse, run_id: str):
        self.wh, self.run_id = wh, run_id
        self.versions: dict[str, str | None] = {}

    def add(self, write_id: str, version: str | None) -> None:
        self.versions[write_id] = version
        if len(self.versions) >= CONFIRM_EVERY:
            self.flush()

    def flush(self) -> None:
        if self.versions:
            set_state(self.wh, list(self.versions), "confirmed", self.run_id, target_versions=self.versions)
            self.versions = {}


#: writes whose `confirmed` transition is recorded together (ten batches of 100)
CONFIRM_EVERY = 1000


def _send_batches(wh, client, by_obj, run_id, down, counts, confirmed: _Confirmations):
    """The batches of send_crm; returns the failure that stopped sending (or the one given)."""
    for (obj, _op), ws in by_obj.items():
        for i in range(0, len(ws), 100):
            chunk = ws[i:i + 100]
            ids = {str(w.payload["id"]): w for w in chunk}
            if down is not None:
                set_state(wh, [w.write_id for w in chunk], "planned", run_id, failing=True, count_attempt=True,
                          error=f"not sent: the CRM failed earlier in this run ({str(down)[:200]})")
                counts["deferred"] += len(chunk)
                continue
            set_state(wh, [w.write_id for w in chunk], "sent", run_id, count_attempt=True)
            try:
                if chunk[0].operation == "upsert":  # by a unique property, e.g. erp_customer_number
                    outcome = client.batch_upsert(obj, chunk[0].payload["id_property"],
                                                  [{"id": w.payload["id"], "properties": w.payload["properties"]}
                                                   for w in chunk])
                else:
                    outcome = client.batch_update(obj, [w.payload for w in chunk])
            except SyncError as exc:
                if getattr(exc, "outcome_unknown", False):
                    set_state(wh, [w.write_id for w in chunk], "unknown", run_id, error=str(exc)[:300], failing=True)
                    counts["unknown"] += len(chunk)
                    continue
                if exc.error_class == "transient":
                    set_state(wh, [w.write_id for w in chunk], "planned", run_id, error=str(exc)[:300], failing=True)
                    counts["deferred"] += len(chunk)
                    down = exc
                    continue
                set_state(wh, [w.write_id for w in chunk], "rejected", run_id, error=str(exc)[:300])
                counts["rejected"] += len(chunk)
                continue
            failed = {}
            for err in outcome.errors:
                for rid in err.get("ids") or []:
                    failed[str(rid)] = err.get("message")
            for rid, w in ids.items():   # per write: each carries the target's own message
                if rid in failed:
                    set_state(wh, [w.write_id], "rejected", run_id, error=(failed[rid] or "")[:300])
                    counts["rejected"] += 1
            applied = set(map(str, outcome.applied_ids))
            versions = {str(r.get("id")): r.get("updatedAt") for r in outcome.results}
            ok = [w for rid, w in ids.items() if rid not in failed and rid in applied]
            silent = [w for rid, w in ids.items() if rid not in failed and rid not in applied]
            for w in ok:
                confirmed.add(w.write_id, versions.get(str(w.payload["id"])))
            set_state(wh, [w.write_id for w in silent], "unknown", run_id,
                      error="the CRM's answer did not acknowledge this input; read back before resending")
            counts["confirmed"] += len(ok)
            counts["unknown"] += len(silent)
    return down
