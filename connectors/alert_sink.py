"""The alert sink: one row in ``ops.alerts`` per alert (queryable next to ``ops.sync_runs``) and,
when a webhook URL is configured (``TRUEUP_ALERT_WEBHOOK_URL``), one JSON POST to it.

Used by the run-failure sensor (orchestration/alerts.py) and by publishing (a write failing for
too long). Secrets never leave: the message is cut to one line and any value of a
secret-looking environment variable (token, password, secret, key) or credentials in a URL are
masked before the row is written or the webhook called. A webhook that fails or times out is
logged, never raised: alerting must not fail its caller (the row is already written).
"""
from __future__ import annotations

import datetime as dt
import logging
import os
import re
import uuid
from dataclasses import asdict, dataclass

import sqlalchemy as sa

from trueup.connectors.warehouse_schema import ALERT_LOG, ensure

log = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 5.0
_SECRET_ENV = re.compile(r"(TOKEN|PASSWORD|SECRET|API_KEY|PRIVATE_KEY)", re.I)
_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.\-]*://)([^/\s:@]+):([^/\s@]+)@", re.I)


@dataclass
class Alert:
    alert_id: str
    run_id: str
    job: str
    partition: str | None
    error_class: str
    message: str
    created_at: dt.datetime


def redact(text: str) -> str:
    """Mask credentials in URLs and the values of secret-looking environment variables."""
    out = _URL_CREDENTIALS.sub(r"\1\2:***@", text)
    for name, value in os.environ.items():
        if value and len(value) >= 6 and _SECRET_ENV.search(name) and value in out:
            out = out.replace(value, "***")
    return out


def classify_failure(message: str | None, error_type: str | None = None) -> str:
    """Classify a failure known only by its message (and exception class name) with
    connectors.errors.classify: the connectors' own classes keep their class, the rest is
    judged by the message text (timeouts, 429/5xx, locks → transient; else permanent)."""
    from trueup.connectors import errors

    cls = getattr(errors, error_type, None) if error_type else None
    if isinstance(cls, type) and issubclass(cls, errors.SyncError):
        return cls("x").error_class
    status = None
    m = re.search(r"\b(?:HTTP|status)\s*(\d{3})\b", message or "", re.I)
    if m:
        status = int(m.group(1))
    exc = Exception(message or "")
    exc.status = status  # classify() reads .status when present
    return errors.classify(exc)


def post_webhook(url: str, alert: Alert, timeout: float = WEBHOOK_TIMEOUT_S) -> bool:
    """POST the alert as JSON; True on a 2xx answer. Failures are logged, not raised."""
    import requests

    body = {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in asdict(alert).items()}
    body["source"] = "trueup"
    body["text"] = (f"Trueup run failed: job {alert.job}"
                    + (f", partition {alert.partition}" if alert.partition else "")
                    + f" [{alert.error_class}] {alert.message}")
    try:
        resp = requests.post(url, json=body, timeout=timeout)
        if resp.status_code >= 300:
            log.warning("alert webhook answered HTTP %s for alert %s", resp.status_code, alert.alert_id)
            return False
        return True
    except Exception as exc:  # noqa: BLE001 — alerting must never fail the caller
        log.warning("alert webhook failed for alert %s: %s", alert.alert_id, type(exc).__name__)
        return False


def record_alert(wh, *, run_id: str, job: str, partition: str | None, message: str | None,
                 error_type: str | None = None, error_class: str | None = None,
                 webhook_url: str | None = None) -> Alert:
    """Write one ops.alerts row for a failed run and, if `webhook_url`, POST it as JSON."""
    from trueup.connectors.errors import one_line

    text = redact(one_line(message or "run failed", limit=1000))
    alert = Alert(
        alert_id=str(uuid.uuid4()), run_id=run_id, job=job, partition=partition,
        error_class=error_class or classify_failure(message, error_type), message=text,
        created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
    )
    ensure(wh, ALERT_LOG)
    with wh.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO ops.alerts (alert_id, run_id, job, partition, error_class, message, created_at) "
            "VALUES (:alert_id, :run_id, :job, :partition, :error_class, :message, :created_at)"), asdict(alert))
    if webhook_url:
        post_webhook(webhook_url, alert)
    return alert
