"""HubSpot CRM v3 endpoint semantics, independent of the HTTP plumbing.

Every handler returns ``(status, body_dict, records_returned)``.
"""
from __future__ import annotations

import time
import uuid
from typing import Any, Callable

from . import search as _search
from .store import (KNOWN_PROPERTIES, MODIFIED_PROP, OBJECT_TYPES, UNIQUE_PROPS, CrmStore, ms_to_iso, now_ms)

MAX_LIST_LIMIT = 100
MAX_BATCH = 100

DEFAULT_PROPERTIES = {
    "companies": ("name", "domain", "createdate", "hs_lastmodifieddate", "hs_object_id"),
    "contacts": ("firstname", "lastname", "email", "createdate", "lastmodifieddate", "hs_object_id"),
    "deals": ("dealname", "amount", "dealstage", "pipeline", "closedate", "createdate", "hs_lastmodifieddate",
              "hs_object_id"),
}
ALWAYS = {t: ("hs_object_id", "createdate", MODIFIED_PROP[t]) for t in OBJECT_TYPES}
ASSOC_TYPE = {"deals": "deal_to_company", "contacts": "contact_to_company", "companies": "company_to_company"}

Result = tuple[int, dict, int]


def error_body(message: str, category: str = "VALIDATION_ERROR", **extra: Any) -> dict:
    body = {"status": "error", "message": message, "correlationId": str(uuid.uuid4()), "category": category}
    body.update(extra)
    return body


def bad_request(message: str, **extra: Any) -> Result:
    return 400, error_body(message, **extra), 0


def _iso_now() -> str:
    return ms_to_iso(now_ms())


def _bool(v: Any, default: bool = False) -> bool:
    if v is None:
        return default
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() in ("true", "1", "yes")


def _prop_list(v: Any) -> list[str] | None:
    """Query values or JSON list -> property names (accepts repeated params and comma lists)."""
    if v is None:
        return None
    items = v if isinstance(v, list) else [v]
    out: list[str] = []
    for it in items:
        for p in str(it).split(","):
            p = p.strip()
            if p and p not in out:
                out.append(p)
    return out


def render(t: str, rec: dict, props: list[str] | None, associations: bool = False) -> dict:
    names = list(DEFAULT_PROPERTIES[t]) if not props else list(dict.fromkeys([*props, *ALWAYS[t]]))
    have = rec["properties"]
    out_props = {}
    for n in names:
        if n in have:
            out_props[n] = have[n]
        elif n in KNOWN_PROPERTIES[t]:
            out_props[n] = None
    obj = {"id": str(rec["id"]), "properties": out_props, "createdAt": ms_to_iso(rec["created_ms"]),
           "updatedAt": ms_to_iso(rec["updated_ms"]), "archived": bool(rec["archived"])}
    if rec["archived"] and rec.get("archived_ms") is not None:
        obj["archivedAt"] = ms_to_iso(rec["archived_ms"])
    if associations and rec.get("company_id") is not None:
        obj["associations"] = {"companies": {"results": [{"id": str(rec["company_id"]), "type": ASSOC_TYPE[t]}]}}
    return obj


def render_full(t: str, rec: dict) -> dict:
    """Write results carry every property the record has."""
    return render(t, rec, sorted(rec["properties"]) or None)


class CrmApi:
    def __init__(self, store: CrmStore, stamp: Callable[[], int], visible: Callable[[], int]):
        self.store = store
        self.stamp = stamp          # -> ms to stamp a write batch with (frozen knob aware)
        self.visible = visible      # -> real ms at which a write made now becomes searchable

    # ------------------------------------------------------------------ reads
    def list(self, t: str, q: dict[str, list[str]], base_url: str) -> Result:
        try:
            limit = int(q.get("limit", ["10"])[-1])
        except ValueError:
            return bad_request("limit must be an integer")
        if limit < 1 or limit > MAX_LIST_LIMIT:
            return bad_request(f"limit must be between 1 and {MAX_LIST_LIMIT} (got {limit})")
        after_raw = q.get("after", ["0"])[-1] or "0"
        try:
            after = int(after_raw)
        except ValueError:
            return bad_request(f"Invalid paging cursor: {after_raw}")
        archived = _bool(q.get("archived", [None])[-1])
        props = _prop_list(q.get("properties"))
        assoc = "companies" in (_prop_list(q.get("associations")) or [])
        rows = self.store.list_page(t, after, limit, archived)
        body: dict = {"results": [render(t, r, props, assoc) for r in rows[:limit]]}
        if len(rows) > limit:
            nxt = str(rows[limit]["id"])
            link_q = f"limit={limit}&after={nxt}" + ("&archived=true" if archived else "")
            body["paging"] = {"next": {"after": nxt, "link": f"{base_url}/crm/v3/objects/{t}?{link_q}"}}
        return 200, body, len(body["results"])

    def get_one(self, t: str, rid: str, q: dict[str, list[str]]) -> Result:
        archived = _bool(q.get("archived", [None])[-1])
        props = _prop_list(q.get("properties"))
        assoc = "companies" in (_prop_list(q.get("associations")) or [])
        id_prop = (q.get("idProperty") or [None])[-1]
        rec = None
        if id_prop and id_prop != "hs_object_id":
            if id_prop not in UNIQUE_PROPS[t]:
                return bad_request(f"Unable to perform lookup by non-unique property: {id_prop}")
            rec = self.store.find_unique(t, id_prop, [rid], archived=archived).get(rid)
        else:
            try:
                rec = self.store.get_many(t, [int(rid)], archived=archived).get(int(rid))
            except ValueError:
                rec = None
        if rec is None:
            return 404, error_body("resource not found", category="OBJECT_NOT_FOUND"), 0
        if id_prop and props:
            props = [*props, id_prop]
        return 200, render(t, rec, props, assoc), 1

    def search(self, t: str, body: Any) -> Result:
        try:
            sql, count_sql, params, limit, after = _search.build_search(t, body, now_ms())
        except _search.SearchError as e:
            return bad_request(str(e))
        total, rows = self.store.search(sql, count_sql, params)
        props = _prop_list((body or {}).get("properties")) if isinstance(body, dict) else None
        out: dict = {"total": total, "results": [render(t, r, props) for r in rows]}
        if after + limit < total:
            out["paging"] = {"next": {"after": str(after + limit)}}
        return 200, out, len(rows)

    def batch_read(self, t: str, body: Any) -> Result:
        started = _iso_now()
        inputs, err = self._inputs(body)
        if err:
            return err
        id_prop = body.get("idProperty")
        archived = _bool(body.get("archived"))
        props = _prop_list(body.get("properties"))
        ids = [str((i or {}).get("id", "")) for i in inputs]
        if id_prop and id_prop != "hs_object_id":
            if id_prop not in UNIQUE_PROPS[t]:
                return bad_request(f"Unable to perform lookup by non-unique property: {id_prop}")
            found = self.store.find_unique(t, id_prop, ids, archived=archived)
        else:
            numeric = [int(i) for i in ids if i.isdigit()]
            found = {str(k): v for k, v in self.store.get_many(t, numeric, archived=archived).items()}
        if id_prop and props:  # like HubSpot: a read by idProperty returns that property too
            props = [*props, id_prop]
        results, missing = [], []
        for i in dict.fromkeys(ids):
            (results.append(render(t, found[i], props)) if i in found else missing.append(i))
        out: dict = {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": _iso_now()}
        if missing:
            out["numErrors"] = 1
            out["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                              "message": f"Could not get some {t[:-1].upper()} objects, they may be deleted or "
                                         f"not exist. Check that ids are valid.",
                              "context": {"ids": missing}, "errors": [], "links": {}}]
            return 207, out, len(results)
        return 200, out, len(results)

    def associations_batch_read(self, from_t: str, to_t: str, body: Any) -> Result:
        """HubSpot v4 `POST /crm/v4/associations/{from}/{to}/batch/read` (deals → companies here).

        Search results carry no associations, so an incremental deal sync reads them with
        this endpoint, up to 1,000 ids a request. Ids without an association are errors (207)."""
        started = _iso_now()
        if from_t != "deals" or to_t != "companies":
            return bad_request(f"Associations {from_t} -> {to_t} are not supported by the sandbox")
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            return bad_request("Invalid input JSON: expected an object with an 'inputs' list")
        if len(body["inputs"]) > 1000:
            return bad_request("Too many inputs: at most 1000 per request")
        ids = [str((i or {}).get("id", "")) for i in body["inputs"]]
        numeric = [int(i) for i in ids if i.isdigit()]
        found = {str(k): v for k, v in self.store.get_many(from_t, numeric, archived=False).items()}
        results, missing = [], []
        for i in dict.fromkeys(ids):
            company = (found.get(i) or {}).get("company_id")
            if company is None:
                missing.append(i)
                continue
            results.append({"from": {"id": i}, "to": [{"toObjectId": int(company), "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": 5, "label": "Primary"}]}]})
        out: dict = {"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": _iso_now()}
        if missing:
            out["numErrors"] = len(missing)
            out["errors"] = [{"status": "error", "category": "NO_ASSOCIATIONS_FOUND",
                              "message": f"No companies are associated with deal {i}.",
                              "context": {"fromObjectId": [i]}} for i in missing]
            return 207, out, len(results)
        return 200, out, len(results)

    # ------------------------------------------------------------------ writes
    def _inputs(self, body: Any) -> tuple[list, Result | None]:
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list):
            return [], bad_request("Invalid input JSON: expected an object with an 'inputs' list")
        inputs = body["inputs"]
        if len(inputs) > MAX_BATCH:
            return [], bad_request(f"Too many inputs: {len(inputs)}; the maximum batch size is {MAX_BATCH}",
                                   context={"maxInputs": [str(MAX_BATCH)]})
        if not all(isinstance(i, dict) for i in inputs):
            return [], bad_request("Invalid input JSON: every input must be an object")
        return inputs, None

    @staticmethod
    def _props(inp: dict) -> dict | None:
        p = inp.get("properties") or {}
        if not isinstance(p, dict):
            return None
        return {str(k): (None if v is None else (str(v).lower() if isinstance(v, bool) else str(v)))
                for k, v in p.items()}

    def _write_result(self, t: str, started: str, results: list[dict], errors: list[dict], upsert: bool) -> Result:
        rendered = []
        for r in results:
            obj = render_full(t, r)
            if upsert:
                obj["new"] = bool(r["new"])
            rendered.append(obj)
        out: dict = {"status": "COMPLETE", "results": rendered, "startedAt": started, "completedAt": _iso_now()}
        if errors:
            out["numErrors"] = len(errors)
            out["errors"] = errors
            return 207, out, len(rendered)
        return 200, out, len(rendered)

    def batch_upsert(self, t: str, body: Any) -> Result:
        started = _iso_now()
        inputs, err = self._inputs(body)
        if err:
            return err
        parsed = []
        for inp in inputs:
            id_prop = inp.get("idProperty") or body.get("idProperty")
            if not id_prop:
                return bad_request("Missing idProperty: upsert needs a unique property to match on")
            if id_prop not in UNIQUE_PROPS[t]:
                return bad_request(f"Unable to perform update/upsert by non-unique property: {id_prop}")
            props = self._props(inp)
            if props is None or inp.get("id") in (None, ""):
                return bad_request("Invalid input JSON: each input needs 'id' and a 'properties' object")
            parsed.append((id_prop, str(inp["id"]), props))
        dup = _dups([(p, i) for p, i, _ in parsed])
        if dup:
            return bad_request(f"Duplicate IDs found in batch input: {[i for _, i in dup]}. IDs must be unique")
        results, errors = self.store.api_batch_upsert(t, parsed, self.stamp(), self.visible())
        return self._write_result(t, started, results, errors, upsert=True)

    def batch_update(self, t: str, body: Any) -> Result:
        started = _iso_now()
        inputs, err = self._inputs(body)
        if err:
            return err
        id_prop = body.get("idProperty")
        parsed = []
        for inp in inputs:
            ip = inp.get("idProperty") or id_prop
            if ip and ip != "hs_object_id" and ip not in UNIQUE_PROPS[t]:
                return bad_request(f"Unable to perform update/upsert by non-unique property: {ip}")
            if ip and ip != (id_prop or ip):
                return bad_request("All inputs of a batch must use the same idProperty")
            id_prop = ip
            props = self._props(inp)
            if props is None or inp.get("id") in (None, ""):
                return bad_request("Invalid input JSON: each input needs 'id' and a 'properties' object")
            parsed.append((str(inp["id"]), props))
        dup = _dups([i for i, _ in parsed])
        if dup:
            return bad_request(f"Duplicate IDs found in batch input: {dup}. IDs must be unique")
        results, errors = self.store.api_batch_update(t, parsed, id_prop, self.stamp(), self.visible())
        return self._write_result(t, started, results, errors, upsert=False)


def _dups(keys: list) -> list:
    seen, dup = set(), []
    for k in keys:
        if k in seen:
            dup.append(k)
        seen.add(k)
    return dup


def wall_ms() -> int:
    return int(time.time() * 1000)
