"""Batch writes (upsert by a unique property, update by id), 100 per request, and their 207 outcomes.

A 207 is not an exception: :class:`BatchOutcome` maps each error to the input ids. A chunk
whose outcome is unknown is never resent; the error raised says which ids to read back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from trueup.connectors.errors import PermanentError, SyncError, TransientError
from trueup.connectors.hubspot.limits import BATCH_SIZE
from trueup.connectors.hubspot.transport import CrmTransport


@dataclass
class BatchOutcome:
    """Result of a batch write: applied records and per-input errors.

    A 207 (some inputs failed, the others were applied) is an outcome, not an exception.

    ``errors`` entries are ``{"ids": [...], "message": str, "category": str}`` where the
    ids are the *input* ids (the ``id`` the caller passed: an idProperty value for
    upserts, a record id for updates).
    """

    results: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    applied_ids: list[str] = field(default_factory=list)  # input ids found in ``results``

    @property
    def error_ids(self) -> set[str]:
        return {i for e in self.errors for i in e["ids"]}

    @property
    def ok(self) -> bool:
        return not self.errors

    def extend(self, other: "BatchOutcome") -> None:
        self.results.extend(other.results)
        self.errors.extend(other.errors)
        self.applied_ids.extend(other.applied_ids)


class BatchWrites(CrmTransport):
    """Batch upsert and update, chunked and fanned out by the transport."""

    def batch_upsert(self, object_type: str, id_property: str, inputs: Sequence[dict]) -> BatchOutcome:
        """Create-or-update by a unique property. ``inputs``: ``[{"id": value, "properties": {...}}]``."""
        payload = [
            {"idProperty": id_property, "id": str(i["id"]), "properties": dict(i.get("properties") or {})}
            for i in inputs
        ]

        def result_key(rec: dict) -> str | None:
            v = (rec.get("properties") or {}).get(id_property)
            return None if v is None else str(v)

        return self._batch_write(object_type, "batch upsert", "upsert", payload, result_key)

    def batch_update(self, object_type: str, inputs: Sequence[dict]) -> BatchOutcome:
        """Update records by id. ``inputs``: ``[{"id": record_id, "properties": {...}}]``."""
        payload = [{"id": str(i["id"]), "properties": dict(i.get("properties") or {})} for i in inputs]
        return self._batch_write(object_type, "batch update", "update", payload, lambda r: str(r.get("id")))

    def _batch_write(
        self,
        object_type: str,
        op: str,
        endpoint: str,
        payload: list[dict],
        result_key: Callable[[dict], str | None],
    ) -> BatchOutcome:
        chunks = [payload[i : i + BATCH_SIZE] for i in range(0, len(payload), BATCH_SIZE)]

        def write(chunk: list[dict]) -> BatchOutcome | SyncError:
            try:
                _, data = self._request(
                    "POST", f"/crm/v3/objects/{object_type}/batch/{endpoint}", object_type=object_type,
                    op=op, body={"inputs": chunk}, write=True,
                )
            except SyncError as exc:  # rejected (4xx), retries spent, or outcome unknown
                exc.chunk_ids = [c["id"] for c in chunk]  # type: ignore[attr-defined]
                return exc
            return self._map_outcome(chunk, data, result_key)

        outcome = BatchOutcome()
        failures: list[SyncError] = []
        for part in self._map_chunks(write, chunks):
            if isinstance(part, BatchOutcome):
                outcome.extend(part)
            else:
                failures.append(part)
        self.stats.add(records_written=len(outcome.results), write_errors=len(outcome.error_ids))
        if not failures:
            return outcome
        permanent = [f for f in failures if isinstance(f, PermanentError)]
        if permanent:
            exc = permanent[0]
        else:
            unknown = [f for f in failures if f.outcome_unknown]
            exc = unknown[0] if unknown else failures[0]
            n_chunks = len(failures)
            if n_chunks > 1:
                exc = TransientError(
                    f"{exc.message} ({n_chunks} of {len(chunks)} chunks affected)",
                    object_type=object_type, operation=op, outcome_unknown=bool(unknown),
                )
        exc.outcome = outcome  # type: ignore[attr-defined]  — what did get applied / rejected
        exc.unknown_ids = [  # type: ignore[attr-defined]
            i for f in failures if f.outcome_unknown for i in getattr(f, "chunk_ids", [])
        ]
        exc.failed_ids = [  # type: ignore[attr-defined]
            i for f in failures if not f.outcome_unknown for i in getattr(f, "chunk_ids", [])
        ]
        raise exc

    @staticmethod
    def _error_ids(err: dict) -> list[str]:
        ctx = err.get("context") or {}
        ids = ctx.get("ids") or ctx.get("id") or []
        if isinstance(ids, (str, int)):
            ids = [ids]
        return [str(i) for i in ids]

    def _map_outcome(
        self, chunk: list[dict], data: dict, result_key: Callable[[dict], str | None]
    ) -> BatchOutcome:
        results = list(data.get("results") or [])
        chunk_ids = [c["id"] for c in chunk]
        in_chunk = set(chunk_ids)
        errors: list[dict] = []
        unattributed: list[dict] = []
        named: set[str] = set()
        for err in data.get("errors") or []:
            ids = [i for i in self._error_ids(err) if i in in_chunk]
            entry = {
                "ids": ids,
                "message": self._scrub(err.get("message") or "error"),
                "category": str(err.get("category") or "ERROR"),
            }
            if ids:
                named.update(ids)
                errors.append(entry)
            else:
                unattributed.append(entry)
        applied = {k for k in (result_key(r) for r in results) if k is not None}
        if unattributed:
            leftover = [i for i in chunk_ids if i not in named and i not in applied]
            if leftover:
                first = unattributed[0]
                if len(unattributed) > 1:
                    first["message"] = "; ".join(e["message"] for e in unattributed)[:500]
                first["ids"] = leftover
                errors.append(first)
        return BatchOutcome(results, errors, [i for i in chunk_ids if i in applied])
