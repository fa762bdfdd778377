"""The sandbox CRM against the contract in spec/crm_api.md (raw HTTP and the official SDK)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import requests

from trueup.sandbox.crm import API_ID_START, CrmStore, ms_to_iso, start_in_thread
from trueup.sandbox.crm.faults import Faults
from tests.fixtures_crm import BASE_MS, N_SEED, QUIET_KNOBS, STEP_MS

RL_HEADERS = ("X-HubSpot-RateLimit-Max", "X-HubSpot-RateLimit-Remaining",
              "X-HubSpot-RateLimit-Interval-Milliseconds")
REPO = Path(__file__).resolve().parents[2]


def _mod_filter(prop: str, op: str, value) -> dict:
    return {"propertyName": prop, "operator": op, "value": str(value)}


def _search(sb, t: str, filters=None, groups=None, **kw) -> requests.Response:
    body = {"filterGroups": groups if groups is not None else ([{"filters": filters}] if filters else []), **kw}
    return sb.post(f"/crm/v3/objects/{t}/search", body)


def _search_all(sb, t: str, **kw) -> tuple[int, list[dict]]:
    out, after, total = [], None, None
    while True:
        extra = dict(kw)
        if after is not None:
            extra["after"] = after
        r = _search(sb, t, **extra)
        assert r.status_code == 200, r.text
        j = r.json()
        total = j["total"]
        out += j["results"]
        after = j.get("paging", {}).get("next", {}).get("after")
        if after is None:
            return total, out


# ----------------------------------------------------------------------------- list / read


def test_list_paging_reaches_every_record_once_with_associations(crm_sandbox):
    seen, after, pages = [], None, 0
    while True:
        params = {"limit": 7, "properties": "dealname,amount", "associations": "companies"}
        if after:
            params["after"] = after
        r = crm_sandbox.get("/crm/v3/objects/deals", params=params)
        assert r.status_code == 200
        j = r.json()
        pages += 1
        seen += j["results"]
        if "paging" not in j:
            break
        after = j["paging"]["next"]["after"]
        assert j["paging"]["next"]["link"].startswith(crm_sandbox.base_url)
    ids = [int(x["id"]) for x in seen]
    assert len(ids) == len(set(ids)) == N_SEED and pages == -(-N_SEED // 7)
    d = next(x for x in seen if x["id"] == "5")
    assert d["properties"]["dealname"] == "Deal 5" and d["properties"]["amount"] == "500"
    assert d["properties"]["hs_object_id"] == "5" and d["properties"]["hs_lastmodifieddate"] == d["updatedAt"]
    assert d["updatedAt"] == ms_to_iso(BASE_MS + 5 * STEP_MS) and d["archived"] is False
    assert d["associations"]["companies"]["results"] == [{"id": "5", "type": "deal_to_company"}]
    # limits
    assert crm_sandbox.get("/crm/v3/objects/deals", params={"limit": 101}).status_code == 400
    assert crm_sandbox.get("/crm/v3/objects/widgets").status_code == 400
    # contacts use lastmodifieddate; requested-but-empty properties come back as null
    c = crm_sandbox.get("/crm/v3/objects/contacts", params={"limit": 1, "properties": "email,phone"}).json()
    props = c["results"][0]["properties"]
    assert props["phone"] is None and "lastmodifieddate" in props and "hs_lastmodifieddate" not in props


def test_get_by_id_and_archived_listing(crm_sandbox):
    r = crm_sandbox.get("/crm/v3/objects/companies/3", params={"properties": "name,tax_id"})
    assert r.status_code == 200 and r.json()["properties"]["name"] == "Company 3"
    assert crm_sandbox.get("/crm/v3/objects/companies/999999").status_code == 404
    r = crm_sandbox.get("/crm/v3/objects/companies/C-00004", params={"idProperty": "erp_customer_number"})
    assert r.json()["id"] == "4"

    at = BASE_MS + 10_000_000
    assert crm_sandbox.store.archive("deals", [1, 2, 3], at) == 3
    live = crm_sandbox.get("/crm/v3/objects/deals", params={"limit": 100}).json()["results"]
    assert {"1", "2", "3"}.isdisjoint(x["id"] for x in live)
    arch = crm_sandbox.get("/crm/v3/objects/deals", params={"archived": "true", "limit": 100}).json()
    assert sorted(x["id"] for x in arch["results"]) == ["1", "2", "3"] and "paging" not in arch
    assert all(x["archived"] is True and x["archivedAt"] == ms_to_iso(at) for x in arch["results"])
    total, _ = _search_all(crm_sandbox, "deals", limit=200)
    assert total == N_SEED - 3  # archived never in search
    assert crm_sandbox.get("/crm/v3/objects/deals/1").status_code == 404
    assert crm_sandbox.get("/crm/v3/objects/deals/1", params={"archived": "true"}).status_code == 200
    assert crm_sandbox.store.count("deals") == N_SEED - 3 and crm_sandbox.store.count("deals", archived=True) == 3


# ----------------------------------------------------------------------------- search


def test_search_filters_sorts_total_and_paging(crm_sandbox):
    lo, hi = BASE_MS + 50 * STEP_MS, BASE_MS + 250 * STEP_MS
    flt = [_mod_filter("hs_lastmodifieddate", "GTE", lo), _mod_filter("hs_lastmodifieddate", "LT", hi)]
    total, rows = _search_all(crm_sandbox, "deals", filters=flt,
                              sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}], limit=33)
    assert total == 200 and [int(x["id"]) for x in rows] == list(range(50, 250))
    # ISO values, BETWEEN, contacts' lastmodifieddate, createdate
    r = _search(crm_sandbox, "contacts", [{"propertyName": "lastmodifieddate", "operator": "BETWEEN",
                                           "value": ms_to_iso(lo), "highValue": str(hi)}]).json()
    assert r["total"] == 201
    assert _search(crm_sandbox, "deals", [_mod_filter("createdate", "LT", BASE_MS - 86_400_000 + 11)]).json()[
        "total"] == 10
    # sorts: numeric amount descending, ties by id
    r = _search(crm_sandbox, "deals", sorts=[{"propertyName": "amount", "direction": "DESCENDING"}], limit=3).json()
    assert [x["id"] for x in r["results"]] == ["300", "299", "298"] and r["paging"]["next"]["after"] == "3"
    r = _search(crm_sandbox, "deals", [_mod_filter("deal_currency_code", "EQ", "usd")],
                sorts=[{"propertyName": "pipeline", "direction": "ASCENDING"}], limit=200).json()
    assert r["total"] == 60 and [int(x["id"]) for x in r["results"]] == list(range(5, 301, 5))
    # IN, NEQ, HAS_PROPERTY / NOT_HAS_PROPERTY, hs_object_id, OR of groups
    r = _search(crm_sandbox, "deals", [{"propertyName": "hs_object_id", "operator": "IN",
                                        "values": ["3", "4", "999"]}], properties=["erp_order_number"]).json()
    assert sorted(x["id"] for x in r["results"]) == ["3", "4"]
    assert {x["id"]: x["properties"]["erp_order_number"] for x in r["results"]} == {"3": None, "4": "SO-000004"}
    assert _search(crm_sandbox, "deals", [{"propertyName": "erp_order_number", "operator": "HAS_PROPERTY"}]
                   ).json()["total"] == 150
    assert _search(crm_sandbox, "companies", [{"propertyName": "tax_id", "operator": "NOT_HAS_PROPERTY"}]
                   ).json()["total"] == 225
    assert _search(crm_sandbox, "companies", [_mod_filter("country", "NEQ", "DE")]).json()["total"] == 100
    groups = [{"filters": [_mod_filter("hs_object_id", "LTE", 2)]},
              {"filters": [_mod_filter("hs_object_id", "GT", 298), _mod_filter("amount", "GT", 29950)]}]
    r = _search(crm_sandbox, "deals", groups=groups).json()
    assert r["total"] == 3 and [x["id"] for x in r["results"]] == ["1", "2", "300"]
    assert _search(crm_sandbox, "deals", [_mod_filter("closedate", "LT", "2024-02-02")]).json()["total"] == 10
    # validation errors
    assert _search(crm_sandbox, "deals", limit=201).status_code == 400
    assert _search(crm_sandbox, "deals", [_mod_filter("nope", "EQ", "x")]).status_code == 400
    assert _search(crm_sandbox, "deals", [_mod_filter("amount", "FOO", "x")]).status_code == 400


def test_search_refuses_to_page_past_10000(tmp_path):
    db = tmp_path / "big.sqlite"
    n = 10_050
    store = CrmStore(db)
    store.load_records("companies", pd.DataFrame({
        "id": range(1, n + 1), "created_ms": BASE_MS, "updated_ms": BASE_MS + 5, "archived": False,
        "name": [f"n{i}" for i in range(n)]}))
    srv = start_in_thread(db, "tok", knobs=QUIET_KNOBS)
    try:
        url = srv.base_url + "/crm/v3/objects/companies/search"
        h = {"Authorization": "Bearer tok"}
        body = {"filterGroups": [{"filters": [_mod_filter("hs_lastmodifieddate", "GTE", BASE_MS)]}],
                "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}], "limit": 200}
        r = requests.post(url, json={**body, "after": "9800"}, headers=h, timeout=10).json()
        assert r["total"] == n and len(r["results"]) == 200 and r["paging"]["next"]["after"] == "10000"
        assert r["results"][-1]["id"] == "10000"  # all same ms: ties broken by id
        r = requests.post(url, json={**body, "after": "9900", "limit": 200}, headers=h, timeout=10).json()
        assert len(r["results"]) == 100  # the window ends at 10,000
        bad = requests.post(url, json={**body, "after": "10000"}, headers=h, timeout=10)
        assert bad.status_code == 400
        j = bad.json()
        assert j["status"] == "error" and j["category"] == "VALIDATION_ERROR" and uuid.UUID(j["correlationId"])
        assert "10000" in j["message"]
    finally:
        srv.stop()


# ----------------------------------------------------------------------------- batch


def test_batch_read(crm_sandbox):
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/read",
                         {"inputs": [{"id": "2"}, {"id": "4"}], "properties": ["dealname", "erp_order_number"]})
    assert r.status_code == 200
    j = r.json()
    assert j["status"] == "COMPLETE" and "startedAt" in j and "completedAt" in j
    assert {x["id"]: x["properties"]["erp_order_number"] for x in j["results"]} == {"2": "SO-000002",
                                                                                   "4": "SO-000004"}
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/read",
                         {"idProperty": "erp_order_number", "inputs": [{"id": "SO-000006"}, {"id": "SO-404"}],
                          "properties": ["amount"]})
    assert r.status_code == 207
    j = r.json()
    assert [x["id"] for x in j["results"]] == ["6"] and j["errors"][0]["context"]["ids"] == ["SO-404"]
    assert j["results"][0]["properties"]["erp_order_number"] == "SO-000006"  # the idProperty comes back too
    assert crm_sandbox.post("/crm/v3/objects/deals/batch/read",
                            {"inputs": [{"id": str(i)} for i in range(101)]}).status_code == 400


def test_batch_upsert_creates_and_updates(crm_sandbox):
    before = crm_sandbox.store.get("deals", 2)
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/upsert", {"inputs": [
        {"idProperty": "erp_order_number", "id": "SO-000002", "properties": {"dealstage": "closedwon"}},
        {"idProperty": "erp_order_number", "id": "SO-NEW-1",
         "properties": {"dealname": "From ERP", "amount": "12.5"}},
    ]})
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["status"] == "COMPLETE"
    by = {x["properties"]["erp_order_number"]: x for x in j["results"]}
    assert by["SO-000002"]["new"] is False and by["SO-000002"]["id"] == "2"
    assert by["SO-NEW-1"]["new"] is True and int(by["SO-NEW-1"]["id"]) >= API_ID_START
    after = crm_sandbox.store.get("deals", 2)
    assert after["properties"]["dealstage"] == "closedwon"
    assert after["properties"]["dealname"] == before["properties"]["dealname"]  # merge, not replace
    assert after["updated_ms"] > before["updated_ms"]
    new = crm_sandbox.store.get("deals", by["SO-NEW-1"]["id"])
    assert new["properties"]["amount"] == "12.5" and new["created_ms"] == new["updated_ms"]
    # again: now an update
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/upsert", {"inputs": [
        {"idProperty": "erp_order_number", "id": "SO-NEW-1", "properties": {"amount": "13"}}]}).json()
    assert r["results"][0]["new"] is False and r["results"][0]["id"] == by["SO-NEW-1"]["id"]
    # the generator's merge keeps properties the platform wrote
    crm_sandbox.store.load_records("deals", pd.DataFrame({
        "id": [2], "created_ms": [before["created_ms"]], "updated_ms": [BASE_MS + 999], "archived": [False],
        "dealname": ["Renamed"], "pipeline": [None]}))
    g = crm_sandbox.store.get("deals", 2)
    assert g["properties"]["dealname"] == "Renamed" and "pipeline" not in g["properties"]
    assert g["properties"]["erp_order_number"] == "SO-000002" and g["properties"]["dealstage"] == "closedwon"
    assert g["updated_ms"] == BASE_MS + 999 and g["properties"]["hs_lastmodifieddate"] == ms_to_iso(BASE_MS + 999)


def test_upsert_by_non_unique_property_is_400(crm_sandbox):
    for prop in ("hs_object_id", "dealname"):
        r = crm_sandbox.post("/crm/v3/objects/deals/batch/upsert", {"inputs": [
            {"idProperty": prop, "id": "2", "properties": {"dealstage": "closedwon"}}]})
        assert r.status_code == 400
        assert "Unable to perform update/upsert by non-unique property" in r.json()["message"]
    assert crm_sandbox.store.get("deals", 2)["properties"]["dealstage"] != "closedwon"
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/upsert", {"inputs": [
        {"idProperty": "erp_order_number", "id": f"SO-X{i}", "properties": {}} for i in range(101)]})
    assert r.status_code == 400


def test_partial_failure_is_207_and_applies_valid_inputs(crm_sandbox):
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/update", {"inputs": [
        {"id": "10", "properties": {"amount": "1000.25"}},
        {"id": "11", "properties": {"no_such_prop": "x"}},
        {"id": "12", "properties": {"amount": "a lot"}},
        {"id": "424242", "properties": {"amount": "1"}},
        {"id": "13", "properties": {"erp_order_number": "SO-000004"}},  # held by deal 4
        {"id": "15", "properties": {"erp_order_number": "SO-NEW-15", "dealstage": "closedlost"}},
    ]})
    assert r.status_code == 207, r.text
    j = r.json()
    assert j["status"] == "COMPLETE" and j["numErrors"] == 4 and len(j["errors"]) == 4
    assert sorted(x["id"] for x in j["results"]) == ["10", "15"]
    errs = {e["context"]["ids"][0]: e for e in j["errors"]}
    assert set(errs) == {"11", "12", "424242", "13"}
    assert all(e["category"] == "VALIDATION_ERROR" and e["status"] == "error" for e in j["errors"])
    assert "PROPERTY_DOESNT_EXIST" in errs["11"]["message"] and "INVALID_FLOAT" in errs["12"]["message"]
    assert "INVALID_UNIQUE_VALUE" in errs["13"]["message"]
    s = crm_sandbox.store
    assert s.get("deals", 10)["properties"]["amount"] == "1000.25"
    assert s.get("deals", 15)["properties"]["erp_order_number"] == "SO-NEW-15"
    assert s.get("deals", 12)["properties"]["amount"] == "1200" and "erp_order_number" not in s.get("deals", 13)[
        "properties"]
    # upsert partial failure too
    r = crm_sandbox.post("/crm/v3/companies/batch/upsert", {"inputs": []})
    assert r.status_code == 404
    r = crm_sandbox.post("/crm/v3/objects/companies/batch/upsert", {"inputs": [
        {"idProperty": "erp_customer_number", "id": "C-00001", "properties": {"ar_balance": "12.00"}},
        {"idProperty": "erp_customer_number", "id": "C-99999", "properties": {"ar_overdue_amount": "x"}}]})
    assert r.status_code == 207 and r.json()["numErrors"] == 1
    assert s.get("companies", 1)["properties"]["ar_balance"] == "12.00"


def test_bulk_write_shares_one_ms_and_is_found_by_modified_search(crm_sandbox):
    ids = [str(i) for i in range(100, 150)]
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/update",
                         {"inputs": [{"id": i, "properties": {"dealstage": "closedwon"}} for i in ids]})
    assert r.status_code == 200
    res = r.json()["results"]
    stamps = {x["updatedAt"] for x in res} | {x["properties"]["hs_lastmodifieddate"] for x in res}
    assert len(stamps) == 1
    (stamp,) = stamps
    r = _search(crm_sandbox, "deals", [_mod_filter("hs_lastmodifieddate", "GTE", stamp)], limit=100).json()
    assert r["total"] == 50 and sorted(x["id"] for x in r["results"]) == sorted(ids)
    r = _search(crm_sandbox, "deals", [_mod_filter("hs_lastmodifieddate", "EQ", stamp)], limit=100).json()
    assert r["total"] == 50


# ----------------------------------------------------------------------------- auth, rate limits


def test_auth_401_body(crm_sandbox):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}):
        r = requests.get(crm_sandbox.base_url + "/crm/v3/objects/deals", headers=headers, timeout=10)
        assert r.status_code == 401
        j = r.json()
        assert j["status"] == "error" and j["category"] == "INVALID_AUTHENTICATION" and j["message"]
        assert uuid.UUID(j["correlationId"])
    r = requests.post(crm_sandbox.base_url + "/_sandbox/knobs", json={"latency_ms": 5}, timeout=10)
    assert r.status_code == 401 and crm_sandbox.server.faults.get("latency_ms") == 0


def test_429_ten_secondly_with_headers(crm_sandbox):
    crm_sandbox.set_knobs(rate_limit_10s=5)
    rems = []
    for _ in range(5):
        r = crm_sandbox.get("/crm/v3/objects/companies", params={"limit": 1})
        assert r.status_code == 200
        assert r.headers["X-HubSpot-RateLimit-Max"] == "5"
        assert r.headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
        rems.append(int(r.headers["X-HubSpot-RateLimit-Remaining"]))
    assert rems == [4, 3, 2, 1, 0]
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/read", {"inputs": [{"id": "1"}]})
    assert r.status_code == 429 and all(h in r.headers for h in RL_HEADERS)
    j = r.json()
    assert j["policyName"] == "TEN_SECONDLY_ROLLING" and j["errorType"] == "RATE_LIMIT"
    assert j["status"] == "error" and "ten_secondly_rolling" in j["message"] and uuid.UUID(j["correlationId"])
    assert crm_sandbox.server.stats()["rate_limited_by_policy"] == {"TEN_SECONDLY_ROLLING": 1}


def test_429_secondly_for_search_without_headers(crm_sandbox):
    crm_sandbox.set_knobs(search_per_second=2, rate_limit_10s=1)
    codes = []
    for _ in range(3):
        r = _search(crm_sandbox, "deals", limit=1)
        codes.append(r.status_code)
        assert not any(h in r.headers for h in RL_HEADERS)
    assert codes == [200, 200, 429]
    assert r.json()["policyName"] == "SECONDLY" and r.json()["errorType"] == "RATE_LIMIT"
    # search does not consume the ten-second budget
    assert crm_sandbox.get("/crm/v3/objects/deals", params={"limit": 1}).status_code == 200
    time.sleep(1.05)
    assert _search(crm_sandbox, "deals", limit=1).status_code == 200


# ----------------------------------------------------------------------------- fault knobs


def test_fault_5xx_latency_malformed_and_stats(crm_sandbox):
    crm_sandbox.set_knobs(error_rate_5xx=1.0)
    codes = {crm_sandbox.get("/crm/v3/objects/deals", params={"limit": 1}).status_code for _ in range(12)}
    assert codes <= {502, 503, 504} and len(codes) >= 2
    # a 5xx is not applied
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/update", {"inputs": [{"id": "7", "properties": {
        "dealstage": "closedlost"}}]})
    assert r.status_code in (502, 503, 504) and crm_sandbox.store.get("deals", 7)["properties"]["dealstage"] != \
        "closedlost"
    crm_sandbox.set_knobs(error_rate_5xx=0, latency_ms=150)
    t0 = time.monotonic()
    assert crm_sandbox.get("/crm/v3/objects/deals", params={"limit": 1}).status_code == 200
    assert time.monotonic() - t0 >= 0.15
    crm_sandbox.set_knobs(latency_ms=0, malformed_rate=1.0)
    r = crm_sandbox.get("/crm/v3/objects/deals", params={"limit": 5})
    assert r.status_code == 200
    with pytest.raises(ValueError):
        json.loads(r.text)
    # the admin endpoint sets knobs and reports stats
    r = crm_sandbox.post("/_sandbox/knobs", {"malformed_rate": 0})
    assert r.status_code == 200 and r.json()["knobs"]["malformed_rate"] == 0
    assert crm_sandbox.post("/_sandbox/knobs", {"bogus": 1}).status_code == 400
    st = crm_sandbox.get("/_sandbox/stats").json()
    assert st["requests_by_kind"]["list"] == 14 and st["requests_by_kind"]["batch_update"] == 1
    assert st["faults"] == {"5xx": 13, "malformed": 1}
    assert sum(v for k, v in st["requests_by_status"].items() if k.startswith("5")) == 13
    assert st["records_returned"] == 1


def test_fault_drop_applies_write_but_loses_response(crm_sandbox):
    crm_sandbox.set_knobs(drop_rate=1.0)
    with pytest.raises(requests.exceptions.ConnectionError):
        crm_sandbox.post("/crm/v3/objects/deals/batch/update",
                         {"inputs": [{"id": "8", "properties": {"dealstage": "closedlost"}}]})
    assert crm_sandbox.store.get("deals", 8)["properties"]["dealstage"] == "closedlost"  # outcome "unknown"
    crm_sandbox.set_knobs(drop_rate=0)
    assert crm_sandbox.get("/crm/v3/objects/deals/8").status_code == 200
    assert crm_sandbox.server.stats()["faults"] == {"drop": 1}


def test_fault_rng_is_seeded():
    def pattern(seed):
        f = Faults({"error_rate_5xx": 0.5, "seed": seed})
        return [f.roll("error_rate_5xx") for _ in range(40)]

    assert pattern(7) == pattern(7) and pattern(7) != pattern(8)


def test_knobs_from_environment(monkeypatch):
    monkeypatch.setenv("TRUEUP_SANDBOX_LATENCY_MS", "25")
    monkeypatch.setenv("TRUEUP_SANDBOX_DROP_RATE", "0.25")
    f = Faults({"drop_rate": 0.5})
    assert f.get("latency_ms") == 25 and f.get("drop_rate") == 0.5  # explicit knobs win over env
    assert Faults().get("drop_rate") == 0.25


def test_fault_frozen_timestamp(crm_sandbox):
    frozen = BASE_MS + 123_456
    crm_sandbox.set_knobs(frozen_timestamp_ms=frozen)
    for i in ("20", "21"):
        r = crm_sandbox.post("/crm/v3/objects/deals/batch/update", {"inputs": [{"id": i, "properties": {
            "dealstage": "closedwon"}}]}).json()
        assert r["results"][0]["updatedAt"] == ms_to_iso(frozen)
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/upsert", {"inputs": [{"idProperty": "erp_order_number",
                         "id": "SO-FROZEN", "properties": {"dealname": "f"}}]}).json()
    assert r["results"][0]["createdAt"] == r["results"][0]["updatedAt"] == ms_to_iso(frozen)
    q = _search(crm_sandbox, "deals", [_mod_filter("hs_lastmodifieddate", "EQ", frozen)]).json()
    assert q["total"] == 3
    crm_sandbox.set_knobs(frozen_timestamp_ms=None)
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/update", {"inputs": [{"id": "22", "properties": {
        "dealstage": "closedwon"}}]}).json()
    assert r["results"][0]["updatedAt"] != ms_to_iso(frozen)


def test_fault_search_visibility_delay(crm_sandbox):
    crm_sandbox.set_knobs(search_visibility_delay_ms=400)
    r = crm_sandbox.post("/crm/v3/objects/deals/batch/update", {"inputs": [{"id": "30", "properties": {
        "dealstage": "closedlost"}}]}).json()
    stamp = r["results"][0]["updatedAt"]
    flt = [_mod_filter("hs_lastmodifieddate", "GTE", stamp)]
    assert _search(crm_sandbox, "deals", flt).json()["total"] == 0
    assert crm_sandbox.get("/crm/v3/objects/deals/30", params={"properties": "dealstage"}).json()[
        "properties"]["dealstage"] == "closedlost"  # reads see it at once
    time.sleep(0.45)
    assert _search(crm_sandbox, "deals", flt).json()["total"] == 1


# ----------------------------------------------------------------------------- lifecycle


def test_state_persists_across_restart(tmp_path):
    db = tmp_path / "crm.sqlite"
    srv = start_in_thread(db, "tok", knobs=QUIET_KNOBS)
    h = {"Authorization": "Bearer tok"}
    body = {"inputs": [{"idProperty": "erp_customer_number", "id": "C-1", "properties": {"name": "Acme"}}]}
    r1 = requests.post(srv.base_url + "/crm/v3/objects/companies/batch/upsert", json=body, headers=h, timeout=10)
    srv.stop()
    srv = start_in_thread(db, "tok", knobs=QUIET_KNOBS)
    try:
        new_id = r1.json()["results"][0]["id"]
        r = requests.get(f"{srv.base_url}/crm/v3/objects/companies/{new_id}", headers=h, timeout=10)
        assert r.status_code == 200 and r.json()["properties"]["name"] == "Acme"
        body["inputs"][0]["id"] = "C-2"
        r2 = requests.post(srv.base_url + "/crm/v3/objects/companies/batch/upsert", json=body, headers=h,
                           timeout=10).json()
        assert int(r2["results"][0]["id"]) == int(new_id) + 1
    finally:
        srv.stop()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.com"])
def test_refuses_non_loopback_bind(tmp_path, host):
    with pytest.raises(ValueError, match="loopback"):
        start_in_thread(tmp_path / "x.sqlite", "tok", host=host)


def test_cli_serves_until_sigterm(tmp_path):
    (tmp_path / "token").write_text("cli-token\n")
    port_file = tmp_path / "port"
    env = {**os.environ, "TRUEUP_SANDBOX_LATENCY_MS": "1"}
    p = subprocess.Popen([sys.executable, "-m", "trueup.sandbox.crm.server", "--db", str(tmp_path / "c.sqlite"),
                          "--token-file", str(tmp_path / "token"), "--port", "0", "--port-file", str(port_file)],
                         cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while not port_file.exists() or not port_file.read_text():
            assert p.poll() is None and time.time() < deadline
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port_file.read_text()}"
        r = requests.get(url + "/crm/v3/objects/deals", headers={"Authorization": "Bearer cli-token"}, timeout=10)
        assert r.status_code == 200 and r.json() == {"results": []}
        assert requests.get(url + "/_sandbox/knobs", headers={"Authorization": "Bearer cli-token"},
                            timeout=10).json()["knobs"]["latency_ms"] == 1
    finally:
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=15)
    assert p.returncode == 0
    assert "/crm/v3/objects/deals" in err and "cli-token" not in err
    bad = subprocess.run([sys.executable, "-m", "trueup.sandbox.crm.server", "--db", str(tmp_path / "c.sqlite"),
                          "--token-file", str(tmp_path / "token"), "--host", "0.0.0.0"], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "loopback" in bad.stderr


# ----------------------------------------------------------------------------- official SDK


@pytest.fixture
def sdk(crm_sandbox):
    hubspot = pytest.importorskip("hubspot")
    # NB: every `client.crm.deals.basic_api` access builds a fresh ApiClient from client.config, so the
    # host must be passed to Client.create (it is set as Configuration.host), not patched afterwards.
    return hubspot.Client.create(access_token=crm_sandbox.token, host=crm_sandbox.base_url)


def test_sdk_list_search_and_upsert(crm_sandbox, sdk):
    from hubspot.crm.deals import (BatchInputSimplePublicObjectBatchInputUpsert, Filter, FilterGroup,
                                   PublicObjectSearchRequest, SimplePublicObjectBatchInputUpsert)

    page = sdk.crm.deals.basic_api.get_page(limit=50, properties=["dealname", "amount"], associations=["companies"],
                                            archived=False)
    assert len(page.results) == 50 and page.paging.next.after == "51"
    d1 = page.results[0]
    assert d1.id == "1" and d1.properties["dealname"] == "Deal 1" and d1.associations["companies"].results[0].id == "1"
    assert int(d1.updated_at.timestamp() * 1000) == BASE_MS + STEP_MS
    all_deals = sdk.crm.deals.get_all(properties=["dealname"])
    assert len(all_deals) == N_SEED

    req = PublicObjectSearchRequest(
        filter_groups=[FilterGroup(filters=[
            Filter(property_name="hs_lastmodifieddate", operator="GTE", value=str(BASE_MS + 100 * STEP_MS)),
            Filter(property_name="hs_lastmodifieddate", operator="LT", value=str(BASE_MS + 120 * STEP_MS))])],
        sorts=[{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
        properties=["dealname", "erp_order_number"], limit=15)
    res = sdk.crm.deals.search_api.do_search(public_object_search_request=req)
    assert res.total == 20 and [r.id for r in res.results] == [str(i) for i in range(100, 115)]
    assert res.paging.next.after == "15"

    batch = BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
        SimplePublicObjectBatchInputUpsert(id_property="erp_order_number", id="SO-000010",
                                           properties={"amount": "777"}),
        SimplePublicObjectBatchInputUpsert(id_property="erp_order_number", id="SO-SDK-1",
                                           properties={"dealname": "SDK deal", "amount": "5"})])
    out = sdk.crm.deals.batch_api.upsert(batch_input_simple_public_object_batch_input_upsert=batch)
    assert out.status == "COMPLETE"
    by = {r.properties["erp_order_number"]: r for r in out.results}
    assert by["SO-000010"].new is False and by["SO-000010"].id == "10" and by["SO-SDK-1"].new is True
    got = sdk.crm.deals.basic_api.get_by_id(by["SO-SDK-1"].id, properties=["dealname", "amount"])
    assert got.properties["dealname"] == "SDK deal" and got.properties["amount"] == "5"
    assert crm_sandbox.store.get("deals", 10)["properties"]["amount"] == "777"

    # a 207 comes back as the *WithErrors model
    bad = BatchInputSimplePublicObjectBatchInputUpsert(inputs=[
        SimplePublicObjectBatchInputUpsert(id_property="erp_order_number", id="SO-SDK-2",
                                           properties={"amount": "lots"}),
        SimplePublicObjectBatchInputUpsert(id_property="erp_order_number", id="SO-SDK-3",
                                           properties={"amount": "3"})])
    out = sdk.crm.deals.batch_api.upsert(batch_input_simple_public_object_batch_input_upsert=bad)
    assert out.num_errors == 1 and out.errors[0].context["ids"] == ["SO-SDK-2"] and len(out.results) == 1


def test_sdk_surfaces_401_and_429(crm_sandbox):
    hubspot = pytest.importorskip("hubspot")
    from hubspot.crm.deals import ApiException

    wrong = hubspot.Client.create(access_token="nope", host=crm_sandbox.base_url)
    with pytest.raises(ApiException) as e:
        wrong.crm.deals.basic_api.get_page(limit=1)
    assert e.value.status == 401
    crm_sandbox.set_knobs(rate_limit_10s=1)
    ok = hubspot.Client.create(access_token=crm_sandbox.token, host=crm_sandbox.base_url)
    ok.crm.companies.basic_api.get_page(limit=1)
    with pytest.raises(Exception) as e:
        ok.crm.companies.basic_api.get_page(limit=1)
    assert getattr(e.value, "status", None) == 429
    assert e.value.headers["X-HubSpot-RateLimit-Max"] == "1"
