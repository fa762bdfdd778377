"""ops.sor_writes: the ledger of every intended write to a system of record.

A write is recorded `planned` (with its idempotency key and payload hash) before it is
sent, then `sent`, then `confirmed`, `rejected` (with the target's error) or `unknown`
(timeout, crash). Writes a person must release wait as `awaiting_approval` or `held`.
`unknown` and interrupted `sent` writes are resolved by reading the target back, never by
blindly sending again. A write whose payload hash is already confirmed is skipped.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass

import pandas as pd
import sqlalchemy as sa

from connectors.warehouse import Warehouse

DDL = """CREATE TABLE IF NOT EXISTS ops.sor_writes (
    write_id TEXT PRIMARY KEY, idempotency_key TEXT, target_system TEXT, target_object TEXT, operation TEXT,
    business_key TEXT, payload_hash TEXT, payload TEXT, state TEXT, attempts INTEGER, run_id TEXT, error TEXT,
    created_at TIMESTAMP, updated_at TIMESTAMP, hold_reason TEXT, approved_by TEXT, approved_at TIMESTAMP,
    correlation_id TEXT, business_date TEXT, target_version TEXT)"""
OPEN_STATES = ("planned", "sent", "unknown")


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def payload_hash(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class Write:
    idempotency_key: str
    target_system: str      # erp | crm
    target_object: str
    operation: str          # create | update | upsert
    business_key: str
    payload: dict

    @property
    def payload_hash(self) -> str:
        return payload_hash(self.payload)

    @property
    def write_id(self) -> str:
        return hashlib.sha256(f"{self.idempotency_key}|{self.payload_hash}".encode()).hexdigest()[:24]


def ensure_ledger(wh: Warehouse) -> None:
    with wh.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS ops"))
        conn.execute(sa.text(DDL))


def ledger_rows(wh: Warehouse, target_object: str | None = None) -> pd.DataFrame:
    ensure_ledger(wh)
    sql = "SELECT * FROM ops.sor_writes"
    params = {}
    if target_object:
        sql += " WHERE target_object = :t"
        params["t"] = target_object
    return wh.query_df(sql, params)


def plan(wh: Warehouse, writes: list[Write], run_id: str, state: str = "planned", hold_reason: str | None = None,
         correlation_id: str | None = None, business_date: str | None = None) -> list[Write]:
    """Record intended writes; returns those that still need sending. A write already
    confirmed with the same payload is skipped; one already recorded keeps its state."""
    if not writes:
        return []
    ensure_ledger(wh)
    at = now()
    with wh.begin() as conn:
        existing = wh.read_df(conn, "SELECT write_id, state, approved_by FROM ops.sor_writes")
        known = dict(zip(existing["write_id"], existing["state"]))
        confirmed_keys = set(wh.read_df(conn, "SELECT idempotency_key, payload_hash FROM ops.sor_writes "
                                              "WHERE state = 'confirmed'").itertuples(index=False, name=None))
        new = [w for w in writes if w.write_id not in known and (w.idempotency_key, w.payload_hash)
               not in confirmed_keys]
        if new:
            conn.execute(sa.text(
                "INSERT INTO ops.sor_writes (write_id, idempotency_key, target_system, target_object, operation, "
                "business_key, payload_hash, payload, state, attempts, run_id, error, created_at, updated_at, "
                "hold_reason, correlation_id, business_date) VALUES (:id, :key, :sys, :obj, :op, :bk, :hash, "
                ":payload, :state, 0, :run, NULL, :at, :at, :hold, :corr, :bd)"),
                [{"id": w.write_id, "key": w.idempotency_key, "sys": w.target_system, "obj": w.target_object,
                  "op": w.operation, "bk": w.business_key, "hash": w.payload_hash,
                  "payload": json.dumps(w.payload, sort_keys=True, default=str), "state": state, "run": run_id,
                  "at": at, "hold": hold_reason, "corr": correlation_id, "bd": business_date} for w in new])
        states = {**known, **{w.write_id: state for w in new}}
    return [w for w in writes if states.get(w.write_id) in ("planned",)]


def set_state(wh: Warehouse, write_ids: list[str], state: str, run_id: str, error: str | None = None,
              count_attempt: bool = False, target_version: str | None = None) -> None:
    if not write_ids:
        return
    with wh.begin() as conn:
        conn.execute(sa.text(
            "UPDATE ops.sor_writes SET state = :s, run_id = :run, error = :e, updated_at = :at, "
            "attempts = attempts + :inc, target_version = coalesce(:tv, target_version) WHERE write_id = :id"),
            [{"s": state, "run": run_id, "e": error, "at": now(), "inc": 1 if count_attempt else 0,
              "tv": target_version, "id": i} for i in write_ids])


def pending(wh: Warehouse, target_object: str) -> pd.DataFrame:
    """Writes left planned, sent or unknown by an earlier (possibly crashed) run."""
    ensure_ledger(wh)
    return wh.query_df("SELECT * FROM ops.sor_writes WHERE target_object = :t AND state IN "
                       "('planned', 'sent', 'unknown')", {"t": target_object})


def approve(wh: Warehouse, idempotency_key: str, actor: str) -> int:
    """Release a write held for approval: audited (who, when); the next publish run sends it."""
    ensure_ledger(wh)
    with wh.begin() as conn:
        n = conn.execute(sa.text(
            "UPDATE ops.sor_writes SET state = 'planned', approved_by = :who, approved_at = :at, updated_at = :at "
            "WHERE idempotency_key = :k AND state = 'awaiting_approval'"),
            {"who": actor, "at": now(), "k": idempotency_key}).rowcount
    return int(n or 0)


def approved_keys(wh: Warehouse) -> set[str]:
    ensure_ledger(wh)
    df = wh.query_df("SELECT idempotency_key FROM ops.sor_writes WHERE approved_by IS NOT NULL")
    return set(df["idempotency_key"])
