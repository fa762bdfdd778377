"""Pytest fixtures for the sandbox CRM: a seeded server in a thread, function-scoped and fast."""
from __future__ import annotations

import dataclasses
import secrets
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import requests

from trueup.sandbox.crm import CrmStore, SandboxServer, start_in_thread

#: deterministic test knobs: every fault off, rate limits off (tests switch them on explicitly)
QUIET_KNOBS = {"rate_limit_10s": 0, "search_per_second": 0, "error_rate_5xx": 0.0, "latency_ms": 0,
               "drop_rate": 0.0, "malformed_rate": 0.0, "frozen_timestamp_ms": None,
               "search_visibility_delay_ms": 0, "seed": 1234}

BASE_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
STEP_MS = 60_000
N_SEED = 300
STAGES = ["appointmentscheduled", "qualifiedtobuy", "contractsent", "closedwon", "closedlost"]


def seed_small_world(store: CrmStore, n: int = N_SEED) -> None:
    """n companies, contacts and deals; record i (1-based) modified at BASE_MS + i*STEP_MS."""
    ids = list(range(1, n + 1))
    created = [BASE_MS - 86_400_000 + i for i in ids]
    updated = [BASE_MS + i * STEP_MS for i in ids]
    store.load_records("companies", pd.DataFrame({
        "id": ids, "created_ms": created, "updated_ms": updated, "archived": False,
        "name": [f"Company {i}" for i in ids], "domain": [f"c{i}.example" for i in ids],
        "country": ["DE" if i % 3 else "FR" for i in ids], "industry": "MANUFACTURING",
        "lifecyclestage": ["customer" if i % 2 else "lead" for i in ids],
        "tax_id": [None if i % 4 else f"DE{i:09d}" for i in ids],
        "erp_customer_number": [f"C-{i:05d}" for i in ids],
        "ar_balance": [f"{i * 10}.50" for i in ids],
    }))
    store.load_records("contacts", pd.DataFrame({
        "id": ids, "created_ms": created, "updated_ms": updated, "archived": False,
        "email": [f"person{i}@c{i}.example" for i in ids], "firstname": [f"First{i}" for i in ids],
        "lastname": [f"Last{i}" for i in ids], "phone": None, "associatedcompanyid": [str(i) for i in ids],
    }))
    store.load_records("deals", pd.DataFrame({
        "id": ids, "created_ms": created, "updated_ms": updated, "archived": False,
        "company_id": [((i - 1) % n) + 1 for i in ids],
        "dealname": [f"Deal {i}" for i in ids], "amount": [str(i * 100) for i in ids],
        "deal_currency_code": ["EUR" if i % 5 else "USD" for i in ids],
        "dealstage": [STAGES[i % len(STAGES)] for i in ids], "pipeline": "default",
        "closedate": [f"2024-02-{(i % 28) + 1:02d}T00:00:00.000Z" for i in ids],
        "erp_order_number": [f"SO-{i:06d}" if i % 2 == 0 else None for i in ids],
    }))


@dataclasses.dataclass
class CrmSandbox:
    server: SandboxServer
    token: str
    db_path: Path

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def store(self) -> CrmStore:
        return self.server.store

    def __post_init__(self) -> None:
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {self.token}"

    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.session.get(self.base_url + path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> requests.Response:
        kw.setdefault("timeout", 10)
        return self.session.post(self.base_url + path, json=json, **kw)

    def set_knobs(self, **kw: Any) -> dict:
        return self.server.set_knobs(**kw)


@pytest.fixture
def crm_sandbox(tmp_path: Path):
    """A running sandbox CRM (thread) over a fresh SQLite store seeded with N_SEED of each object."""
    db = tmp_path / "crm.sqlite"
    seed_small_world(CrmStore(db))
    token = "test-" + secrets.token_hex(8)
    srv = start_in_thread(db, token, knobs=dict(QUIET_KNOBS))
    sb = CrmSandbox(srv, token, db)
    try:
        yield sb
    finally:
        sb.session.close()
        srv.stop()
