"""Reading CRM records: every record of a type (``after`` cursors), records by id, associations."""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Sequence

from trueup.connectors.errors import PermanentError
from trueup.connectors.hubspot.limits import ASSOCIATION_BATCH_SIZE, BATCH_SIZE, LIST_PAGE
from trueup.connectors.hubspot.transport import CrmTransport


class RecordReads(CrmTransport):
    """Lists, batch reads and association reads, over the transport's paced, retried requests."""

    def list_records(
        self,
        object_type: str,
        properties: Sequence[str],
        *,
        archived: bool = False,
        associations: Sequence[str] | str | None = None,
    ) -> Iterator[list[dict]]:
        """Every record of ``object_type`` (archived ones if ``archived``), 100 per page."""
        params: dict[str, Any] = {"limit": LIST_PAGE, "archived": "true" if archived else "false"}
        if properties:
            params["properties"] = ",".join(properties)
        if associations:
            params["associations"] = associations if isinstance(associations, str) else ",".join(associations)
        after: str | None = None
        while True:
            p = dict(params)
            if after:
                p["after"] = after
            _, data = self._request(
                "GET", f"/crm/v3/objects/{object_type}", object_type=object_type, op="list", params=p
            )
            results = data.get("results") or []
            self.stats.add(pages=1, records=len(results))
            if results:
                yield results
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return

    def batch_read(
        self,
        object_type: str,
        ids: Iterable[str],
        properties: Sequence[str],
        *,
        id_property: str | None = None,
        archived: bool = False,
    ) -> list[dict]:
        """Read records by id (or by a unique ``id_property``, which is then always among
        the returned properties); ids that do not exist are simply absent."""
        ids = [str(i) for i in dict.fromkeys(ids)]
        # the id property comes back too, so results can be matched to the ids asked
        props = list(dict.fromkeys([*properties, *([id_property] if id_property else [])]))
        chunks = [ids[i : i + BATCH_SIZE] for i in range(0, len(ids), BATCH_SIZE)]

        def read(chunk: list[str]) -> list[dict]:
            body: dict[str, Any] = {"inputs": [{"id": i} for i in chunk], "properties": props}
            if id_property:
                body["idProperty"] = id_property
            if archived:  # HubSpot reads the query parameter; the sandbox reads the body
                body["archived"] = True
            _, data = self._request(
                "POST", f"/crm/v3/objects/{object_type}/batch/read", object_type=object_type,
                op="batch read", params={"archived": "true" if archived else "false"}, body=body,
            )
            results = data.get("results") or []
            self.stats.add(pages=1, records=len(results))
            return results

        out: list[dict] = []
        for part in self._map_chunks(read, chunks):
            out.extend(part)
        return out

    def read_associations(self, from_type: str, to_type: str, ids: Iterable[str]) -> dict[str, str]:
        """``{from_id: to_id}`` — the (first, lowest-id) ``to_type`` record each id is associated with.

        Uses ``POST /crm/v4/associations/{from}/{to}/batch/read`` (HubSpot). Where that route
        does not exist (404 — the sandbox implements associations only on list and single
        reads) it falls back to ``GET /crm/v3/objects/{from}/{id}?associations={to}``, one
        request per id. Ids without an association (or that do not exist) are absent.
        """
        ids = [str(i) for i in dict.fromkeys(ids)]
        if not ids:
            return {}
        out: dict[str, str] = {}
        if not getattr(self, "_assoc_batch_missing", False):
            # the v4 association batch read takes up to 1,000 ids (HubSpot, since 2025)
            n = ASSOCIATION_BATCH_SIZE
            chunks = [ids[i : i + n] for i in range(0, len(ids), n)]

            def read(chunk: list[str]) -> list[dict]:
                _, data = self._request(
                    "POST", f"/crm/v4/associations/{from_type}/{to_type}/batch/read",
                    object_type=from_type, op=f"{to_type} associations read",
                    body={"inputs": [{"id": i} for i in chunk]},
                )
                self.stats.add(pages=1)
                return data.get("results") or []

            try:
                parts = self._map_chunks(read, chunks[:1])
            except PermanentError as exc:
                if exc.status != 404:
                    raise
                self._assoc_batch_missing = True
            else:
                parts += self._map_chunks(read, chunks[1:])
                for results in parts:
                    for res in results:
                        src = str((res.get("from") or {}).get("id"))
                        tos = [str(t.get("toObjectId") or t.get("id")) for t in res.get("to") or []]
                        tos = [t for t in tos if t and t != "None"]
                        if tos:
                            out[src] = min(tos, key=lambda t: (len(t), t))
                return out

        def get_one(rid: str) -> tuple[str, str | None]:
            try:
                _, data = self._request(
                    "GET", f"/crm/v3/objects/{from_type}/{rid}", object_type=from_type,
                    op=f"{to_type} associations read",
                    params={"associations": to_type, "properties": "hs_object_id"},
                )
            except PermanentError as exc:
                if exc.status == 404:
                    return rid, None
                raise
            tos = [str(t.get("id")) for t in ((data.get("associations") or {}).get(to_type) or {}).get("results") or []]
            return rid, (min(tos, key=lambda t: (len(t), t)) if tos else None)

        for rid, to in self._map_chunks(get_one, ids):
            if to is not None:
                out[rid] = to
        return out
