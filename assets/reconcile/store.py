"""The stateful merge of one run's breaks into recon.breaks (the recon tables and view are
connectors/warehouse_schema's; `ensure_recon_tables` makes sure of them and seeds the rates).

A break's id is a hash of (recon_name, break_type, business_key), so the same problem keeps its
id night after night: seen again → last_seen_at moves (first_seen_at stays; a resolved break
that comes back is reopened, keeping its first_seen_at); not seen by a later run of the same scope → resolved, with
resolved_at. The merge stages the run's breaks in a temp table and applies UPDATE … FROM +
INSERT … WHERE NOT EXISTS, which both DuckDB and PostgreSQL accept.

Each row has a `category` (`break` | `pending` | `timing`, see rules/__init__.py): only breaks
carry `amount_at_risk`; pending and timing rows carry their amount in `amount_pending`. The
counts a run reports (found, opened, resolved, open, money at risk) are of real breaks, and
money at risk is counted once per root cause (`chain_key`): the view recon.breaks_counted gives
each break its `counted_at_risk`, the chain's largest exposure held by one break of it.
"""
from __future__ import annotations

import hashlib

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from trueup.connectors.warehouse_schema import RECON, ensure_in

from .config import FX_TO_USD

#: money at risk once per root cause, as recon.breaks_counted counts it, over one run's staged findings
STAGE_RISK_SQL = ("SELECT coalesce(sum(m), 0) FROM (SELECT max(amount_at_risk) AS m FROM recon_stage "
                  "WHERE category = 'break' GROUP BY coalesce(chain_key, break_id)) x")

def break_id(recon_name: str, break_type: str, business_key: str) -> str:
    """The same as the SQL in `merge_breaks` (md5 of 'recon|type|key', first 24 hex digits)."""
    return hashlib.md5(f"{recon_name}|{break_type}|{business_key}".encode()).hexdigest()[:24]


def ensure_recon_tables(conn: Connection) -> None:
    """recon's tables and view in their current layout (connectors/warehouse_schema, once per
    process), inside the caller's transaction; recon.fx_rates seeded with the planning rates
    while it is empty (finance may edit it afterwards: runs read the table)."""
    ensure_in(conn, RECON)
    if not conn.execute(sa.text("SELECT count(*) FROM recon.fx_rates")).scalar():
        conn.execute(sa.text("INSERT INTO recon.fx_rates (currency, usd_per_unit) VALUES (:c, :r)"),
                     [{"c": c, "r": r} for c, r in FX_TO_USD.items()])


def create_found_table(conn: Connection) -> None:
    conn.execute(sa.text("DROP TABLE IF EXISTS recon_found"))
    conn.execute(sa.text(
        "CREATE TEMP TABLE recon_found (break_type TEXT, business_key TEXT, left_system TEXT, right_system TEXT, "
        "left_amount DECIMAL(18,2), right_amount DECIMAL(18,2), risk DECIMAL(18,2), currency TEXT, details TEXT, "
        "problem_date DATE, category TEXT, owner_system TEXT, reason TEXT, chain_key TEXT)"))


def latest_merged_as_of(conn: Connection, recon_name: str, scope: str):
    """The latest business date whose findings were merged for (recon_name, scope), or None."""
    return conn.execute(sa.text("SELECT max(as_of) FROM recon.runs WHERE recon_name = :n AND scope = :s "
                                "AND coalesce(merged, true)"), {"n": recon_name, "s": scope}).scalar()


def stage_breaks(conn: Connection, recon_name: str, reporting_currency: str) -> None:
    """recon_stage: recon_found with break ids and money in the reporting currency."""
    p = {"name": recon_name, "rep": reporting_currency}
    conn.execute(sa.text("DROP TABLE IF EXISTS recon_stage"))
    conn.execute(sa.text("UPDATE recon_found SET category = 'break' WHERE category IS NULL"))
    conv = ("CAST(round(CAST(abs(f.risk) * coalesce(r.usd_per_unit, 1) / coalesce(rr.usd_per_unit, 1) AS NUMERIC), 2) "
            "AS DECIMAL(18,2))")
    conn.execute(sa.text(
        "CREATE TEMP TABLE recon_stage AS SELECT substr(md5(:name || '|' || f.break_type || '|' || f.business_key), "
        f"1, 24) AS break_id, f.*, CASE WHEN f.category = 'break' THEN {conv} ELSE 0 END AS amount_at_risk, "
        f"CASE WHEN f.category = 'break' THEN 0 ELSE {conv} END AS amount_pending "
        "FROM recon_found f LEFT JOIN recon.fx_rates r ON r.currency = f.currency "
        "LEFT JOIN recon.fx_rates rr ON rr.currency = :rep"), p)


def found_counts(conn: Connection, recon_name: str, scope: str) -> dict:
    """What a run found, for a run whose findings are not merged (an earlier date than the latest)."""
    p = {"name": recon_name, "scope": scope}
    q = lambda sql: int(conn.execute(sa.text(sql), p).scalar() or 0)  # noqa: E731
    return {**stage_counts(conn), "breaks_opened": 0, "breaks_resolved": 0,
            "breaks_open": q("SELECT count(*) FROM recon.breaks WHERE recon_name = :name AND scope = :scope "
                             "AND status = 'open' AND category = 'break'")}


def stage_counts(conn: Connection) -> dict:
    """A run's findings by category, and its money at risk counted once per root cause."""
    by = dict(conn.execute(sa.text("SELECT category, count(*) FROM recon_stage GROUP BY category")).fetchall())
    risk = conn.execute(sa.text(STAGE_RISK_SQL)).scalar()
    pending = conn.execute(sa.text("SELECT coalesce(sum(amount_pending), 0) FROM recon_stage "
                                   "WHERE category = 'pending'")).scalar()
    return {"breaks_found": int(by.get("break", 0)), "pending_found": int(by.get("pending", 0)),
            "timing_found": int(by.get("timing", 0)), "amount_at_risk": float(risk or 0),
            "amount_pending": float(pending or 0)}


def merge_breaks(conn: Connection, recon_name: str, scope: str, run_id: str, now, reporting_currency: str,
                 as_of=None) -> dict:
    """Merge recon_found into recon.breaks for (recon_name, scope) as of business date `as_of`;
    returns the counts."""
    stage_breaks(conn, recon_name, reporting_currency)
    p = {"name": recon_name, "scope": scope, "run": run_id, "now": now, "rep": reporting_currency, "as_of": as_of}
    q = lambda sql: int(conn.execute(sa.text(sql), p).scalar() or 0)  # noqa: E731
    opened = q("SELECT count(*) FROM recon_stage s WHERE s.category = 'break' AND NOT EXISTS "
               "(SELECT 1 FROM recon.breaks b WHERE b.break_id = s.break_id AND b.status = 'open')")
    resolved = q("SELECT count(*) FROM recon.breaks b WHERE b.recon_name = :name AND b.scope = :scope "
                 "AND b.status = 'open' AND b.category = 'break' "
                 "AND NOT EXISTS (SELECT 1 FROM recon_stage s WHERE s.break_id = b.break_id)")
    conn.execute(sa.text(
        "UPDATE recon.breaks SET left_amount = s.left_amount, right_amount = s.right_amount, "
        "amount_at_risk = s.amount_at_risk, amount_at_risk_doc = s.risk, currency = s.currency, "
        "details = s.details, last_seen_at = :now, run_id = :run, reporting_currency = :rep, "
        "times_seen = recon.breaks.times_seen + 1, last_seen_as_of = :as_of, resolved_as_of = NULL, "
        "status = 'open', resolved_at = NULL, problem_date = s.problem_date, category = s.category, "
        "owner_system = s.owner_system, reason = s.reason, chain_key = s.chain_key, "
        "amount_pending = s.amount_pending FROM recon_stage s WHERE recon.breaks.break_id = s.break_id"), p)
    conn.execute(sa.text(
        "INSERT INTO recon.breaks (break_id, recon_name, break_type, business_key, left_system, right_system, "
        "left_amount, right_amount, amount_at_risk, currency, first_seen_at, last_seen_at, status, resolved_at, "
        "details, scope, amount_at_risk_doc, reporting_currency, run_id, times_seen, first_seen_as_of, "
        "last_seen_as_of, problem_date, category, owner_system, reason, chain_key, amount_pending) "
        "SELECT s.break_id, :name, s.break_type, s.business_key, s.left_system, s.right_system, s.left_amount, "
        "s.right_amount, s.amount_at_risk, s.currency, :now, :now, 'open', NULL, s.details, :scope, s.risk, :rep, "
        ":run, 1, :as_of, :as_of, s.problem_date, s.category, s.owner_system, s.reason, s.chain_key, "
        "s.amount_pending FROM recon_stage s "
        "WHERE NOT EXISTS (SELECT 1 FROM recon.breaks b WHERE b.break_id = s.break_id)"),
        p)
    conn.execute(sa.text(
        "UPDATE recon.breaks SET status = 'resolved', resolved_at = :now, resolved_as_of = :as_of, run_id = :run "
        "WHERE recon_name = :name "
        "AND scope = :scope AND status = 'open' AND NOT EXISTS "
        "(SELECT 1 FROM recon_stage s WHERE s.break_id = recon.breaks.break_id)"), p)
    open_ = q("SELECT count(*) FROM recon.breaks WHERE recon_name = :name AND scope = :scope AND status = 'open' "
              "AND category = 'break'")
    return {**stage_counts(conn), "breaks_opened": opened, "breaks_resolved": resolved, "breaks_open": open_}
