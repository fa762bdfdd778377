"""Error classes shared by the connectors (docs/architecture.md, rule 6).

Every failure the platform handles falls in one of four classes:

* ``transient``      — timeouts, 429, 5xx, dropped connections, locks: retry with backoff.
* ``permanent``      — 401/403, 400 validation, missing table/column: fail fast, alert.
* ``contract``       — the data broke its contract: quarantine the rows.
* ``human_required`` — needs an explicit approval before it can proceed.

The connectors raise :class:`SyncError` subclasses carrying ``.error_class``; anything
else can be mapped with :func:`classify`. Messages are one line, name the object and the
reason, and never carry a credential.
"""
from __future__ import annotations

import re

ERROR_CLASSES = ("transient", "permanent", "contract", "human_required")


def one_line(text: object, limit: int = 300) -> str:
    """Collapse whitespace and cut a message to ``limit`` characters."""
    s = re.sub(r"\s+", " ", str(text)).strip()
    return s if len(s) <= limit else s[: limit - 1] + "…"


class SyncError(Exception):
    """A classified failure. ``error_class`` is one of :data:`ERROR_CLASSES`."""

    error_class: str = "permanent"

    def __init__(
        self,
        message: str,
        *,
        error_class: str | None = None,
        status: int | None = None,
        category: str | None = None,
        object_type: str | None = None,
        operation: str | None = None,
        outcome_unknown: bool = False,
    ) -> None:
        super().__init__(message)
        if error_class is not None:
            if error_class not in ERROR_CLASSES:
                raise ValueError(f"unknown error class {error_class!r}")
            self.error_class = error_class
        self.message = message
        self.status = status
        self.category = category
        self.object_type = object_type
        self.operation = operation
        # True when a write may or may not have been applied (timeout, dropped
        # connection, unreadable response): resolve by reading the target back.
        self.outcome_unknown = outcome_unknown

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.message


class TransientError(SyncError):
    """Worth retrying later (the client already retried up to its budget)."""

    error_class = "transient"


class PermanentError(SyncError):
    """Retrying will not help: fix credentials, configuration or the request."""

    error_class = "permanent"


class HumanRequiredError(SyncError):
    """Held until a person approves it."""

    error_class = "human_required"


_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
_PERMANENT_STATUS = {400, 401, 403, 404, 405, 409, 410, 413, 415, 422}
_TRANSIENT_TEXT = (
    "database is locked",
    "could not set lock on file",
    "conflicting lock",
    "deadlock detected",
    "could not serialize access",
    "connection reset",
    "connection refused",
    "server closed the connection",
    "timed out",
    "timeout",
    "temporarily unavailable",
)


def classify(exc: BaseException) -> str:
    """Map any exception to an error class (``transient``/``permanent``/``contract``/``human_required``)."""
    ec = getattr(exc, "error_class", None)
    if isinstance(ec, str) and ec in ERROR_CLASSES:
        return ec
    # requests / urllib3 / builtin network failures
    try:  # requests is a hard dependency, but keep classify import-light
        import requests

        if isinstance(exc, (requests.Timeout, requests.ConnectionError)):
            return "transient"
        if isinstance(exc, requests.HTTPError) and exc.response is not None:
            return _classify_status(exc.response.status_code)
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return "transient"
    status = getattr(exc, "status", None) or getattr(exc, "status_code", None)
    if isinstance(status, int):
        return _classify_status(status)
    text = str(exc).lower()
    if any(t in text for t in _TRANSIENT_TEXT):
        return "transient"
    return "permanent"


def _classify_status(status: int) -> str:
    if status in _TRANSIENT_STATUS or status >= 500:
        return "transient"
    return "permanent"
