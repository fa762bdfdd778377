"""Every table and view the platform keeps in the warehouse's `ops`, `quality` and `recon`
schemas, each column once, grouped as their writers need them."""
from __future__ import annotations

from .model import Group, Table, View, columns

# -- ops: what every run did, the write ledger, alerts, the migrations applied -----------------
SYNC_RUNS = Table("ops", "sync_runs", columns(
    "run_id TEXT, asset TEXT, partition TEXT, attempt INTEGER, started_at TIMESTAMP, finished_at TIMESTAMP, "
    "status TEXT, rows_read BIGINT, rows_written BIGINT, rows_quarantined BIGINT, error_class TEXT, "
    "error_message TEXT, window_start TIMESTAMP, window_end TIMESTAMP, pages INTEGER, retries INTEGER, "
    "correlation_id TEXT, business_date TEXT, rows_echo BIGINT"))

EXPORT_LOADS = Table("ops", "export_loads", columns(
    "export_date TEXT, manifest_sha256 TEXT, status TEXT, reason TEXT, rows_invoices BIGINT, "
    "rows_payments BIGINT, run_id TEXT, checked_at TIMESTAMP"))

SOR_WRITES = Table("ops", "sor_writes", columns(
    "write_id TEXT PRIMARY KEY, idempotency_key TEXT, target_system TEXT, target_object TEXT, operation TEXT, "
    "business_key TEXT, payload_hash TEXT, payload TEXT, state TEXT, attempts INTEGER, run_id TEXT, error TEXT, "
    "created_at TIMESTAMP, updated_at TIMESTAMP, hold_reason TEXT, approved_by TEXT, approved_at TIMESTAMP, "
    "correlation_id TEXT, business_date TEXT, target_version TEXT, "
    # since the first release: supersession, transient failures and their alert, a person's decision
    "superseded_by TEXT, superseded_at TIMESTAMP, failing_since TIMESTAMP, alerted_at TIMESTAMP, "
    "decided_by TEXT, decided_at TIMESTAMP, decision TEXT, "
    # a person's link of a held deal to an existing ERP order (reconciliation pairs them)
    "linked_order_number TEXT, "
    # the business clock of the night a confirmed write belongs to (assets/publish/business_time.py)
    "business_at TIMESTAMP"))

ALERTS = Table("ops", "alerts", columns(
    "alert_id TEXT, run_id TEXT, job TEXT, partition TEXT, error_class TEXT, message TEXT, created_at TIMESTAMP"))

# the CRM rate budget shared by every process calling one CRM (connectors/shared_budget.py): recent sends
# per bucket (`next_at` is no longer written: searches were spaced by one shared next send time until
# they got a window of their own; the column stays, as dropping one needs a migration)
CRM_BUDGET = Table("ops", "crm_budget", columns("budget TEXT, name TEXT, bucket BIGINT, sends INTEGER, "
                                                 "next_at DOUBLE PRECISION"),
                   constraints=("PRIMARY KEY (budget, name, bucket)",))

SCHEMA_MIGRATIONS = Table("ops", "schema_migrations", columns(
    "version INTEGER PRIMARY KEY, name TEXT, applied_at TIMESTAMP, detail TEXT"))

# -- quality: the gates' results and the quarantine ------------------------------------------------
QUARANTINE = Table("quality", "quarantine", columns(
    "quarantine_id TEXT PRIMARY KEY, contract TEXT, contract_version TEXT, object TEXT, business_key TEXT, "
    "partition TEXT, run_id TEXT, failed_expectations TEXT, payload TEXT, record_version TEXT, "
    "first_seen_at TIMESTAMP, last_seen_at TIMESTAMP, attempts INTEGER, status TEXT, resolved_at TIMESTAMP, "
    "resolution TEXT"))

GATE_RESULTS = Table("quality", "gate_results", columns(
    "run_id TEXT, contract TEXT, contract_version TEXT, object TEXT, partition TEXT, direction TEXT, "
    "rows_in BIGINT, rows_passed BIGINT, rows_quarantined BIGINT, blocked BOOLEAN, evaluated_at TIMESTAMP, "
    "money_in DOUBLE PRECISION, money_passed DOUBLE PRECISION, money_quarantined DOUBLE PRECISION, "
    "unexpected_counts TEXT, block_reason TEXT, gx_success BOOLEAN, "
    # what was evaluated (quality/store.py BATCH_KINDS); rows older than it are labelled by migration 3
    "batch_kind TEXT"))

QUARANTINE_ACTIONS = Table("quality", "quarantine_actions", columns(
    "quarantine_id TEXT, action TEXT, actor TEXT, reason TEXT, acted_at TIMESTAMP, run_id TEXT"))

# every business day on which a record was quarantined: the quarantine keeps one entry per record
# (the work to do, moved to the latest day it failed), so the days it failed before are kept here
QUARANTINE_DAYS = Table("quality", "quarantine_days", columns(
    "quarantine_id TEXT, contract TEXT, object TEXT, business_key TEXT, partition TEXT, run_id TEXT, "
    "first_seen_at TIMESTAMP"))

# -- recon: reconciliation breaks, runs, and the rates money at risk is converted with --------------
BREAKS = Table("recon", "breaks", columns(
    "break_id TEXT PRIMARY KEY, recon_name TEXT, break_type TEXT, business_key TEXT, left_system TEXT, "
    "right_system TEXT, left_amount DECIMAL(18,2), right_amount DECIMAL(18,2), amount_at_risk DECIMAL(18,2), "
    "currency TEXT, first_seen_at TIMESTAMP, last_seen_at TIMESTAMP, status TEXT, resolved_at TIMESTAMP, "
    "details TEXT, scope TEXT, amount_at_risk_doc DECIMAL(18,2), reporting_currency TEXT, run_id TEXT, "
    "times_seen INTEGER, "
    # the business dates a break was first and last seen as of, and resolved as of
    "first_seen_as_of DATE, last_seen_as_of DATE, resolved_as_of DATE, "
    # what a person needs to act: category, when the problem began, who fixes it, in plain words,
    # and the root-cause chain its money belongs to
    "problem_date DATE, category TEXT, owner_system TEXT, reason TEXT, chain_key TEXT, "
    "amount_pending DECIMAL(18,2)"),
    # rows written before categories existed were all breaks
    backfill=("UPDATE recon.breaks SET category = 'break' WHERE category IS NULL",))

RUNS = Table("recon", "runs", columns(
    "run_id TEXT, recon_name TEXT, partition TEXT, left_rows BIGINT, right_rows BIGINT, matched BIGINT, "
    "breaks_opened BIGINT, breaks_resolved BIGINT, breaks_open BIGINT, amount_at_risk DECIMAL(18,2), "
    "started_at TIMESTAMP, finished_at TIMESTAMP, scope TEXT, as_of DATE, breaks_found BIGINT, "
    "breaks_by_type TEXT, settings TEXT, "
    # whether the run's findings were merged into recon.breaks (a re-run of an earlier date is not)
    "merged BOOLEAN, "
    "pending_found BIGINT, timing_found BIGINT, amount_pending DECIMAL(18,2)"))

FX_RATES = Table("recon", "fx_rates", columns("currency TEXT PRIMARY KEY, usd_per_unit DOUBLE PRECISION"))

#: every break with `counted_at_risk`: money at risk once per root cause — within a chain
#: (deal → order → invoices → payments) the largest exposure, held by one break; the others 0
BREAKS_COUNTED = View("recon", "breaks_counted", (
    "SELECT b.*, CASE WHEN b.category = 'break' AND row_number() OVER (PARTITION BY b.status, b.category, "
    "coalesce(b.chain_key, b.break_id) ORDER BY b.amount_at_risk DESC, b.break_id) = 1 "
    "THEN coalesce(b.amount_at_risk, 0) ELSE 0 END AS counted_at_risk FROM recon.breaks b"))

# -- the groups, as their writers ensure them ---------------------------------------------------------
RUN_FACTS = Group("run_facts", (SYNC_RUNS, EXPORT_LOADS))                 # assets/run_facts.py, ingest/export_log.py
LEDGER = Group("ledger", (SOR_WRITES,))                                   # assets/publish/ledger.py
ALERT_LOG = Group("alerts", (ALERTS,))                                    # connectors/alert_sink.py
MIGRATION_LOG = Group("migrations", (SCHEMA_MIGRATIONS,))                 # assets/migrations.py
CRM_BUDGET_GROUP = Group("crm_budget", (CRM_BUDGET,))                     # connectors/shared_budget.py
# the gate also writes `validated`, whose tables follow the contracts (quality/store.py makes them)
QUALITY = Group("quality", (QUARANTINE, GATE_RESULTS, QUARANTINE_ACTIONS, QUARANTINE_DAYS),
                extra_schemas=("validated",))
RECON = Group("recon", (BREAKS, RUNS, FX_RATES), views=(BREAKS_COUNTED,))   # assets/reconcile/store.py

GROUPS = (RUN_FACTS, LEDGER, ALERT_LOG, MIGRATION_LOG, CRM_BUDGET_GROUP, QUALITY, RECON)
TABLES = {t.qualified: t for g in GROUPS for t in g.tables}
VIEWS = {v.qualified: v for g in GROUPS for v in g.views}
