"""Where the client may send its token, and what a transport failure means for a retry."""
from __future__ import annotations

import requests

from trueup.connectors.errors import PermanentError

TOKEN_HINT = "check TRUEUP_CRM_TOKEN"


def require_safe_url(base_url: str) -> None:
    """The bearer token travels in every request: plain http:// only to this machine."""
    from urllib.parse import urlsplit
    import ipaddress

    parts = urlsplit(base_url)
    if parts.scheme == "https":
        return
    host = (parts.hostname or "").lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if parts.scheme != "http" or not loopback:
        raise PermanentError(f"refusing CRM URL {parts.scheme}://{parts.hostname or ''}…: the token would travel in "
                             f"clear; use https:// (plain http:// only to 127.0.0.1) — check TRUEUP_CRM_BASE_URL")


def classify_network_failure(exc: requests.RequestException) -> tuple[str, bool]:
    """Classify a transport failure: (kind, request may have been applied)."""
    import urllib3.exceptions as u3

    if isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                        requests.exceptions.InvalidSchema)):
        return "invalid_url", False
    if isinstance(exc, requests.ConnectTimeout):
        return "timeout", False
    if isinstance(exc, requests.Timeout):
        return "timeout", True
    if isinstance(exc, requests.ConnectionError):
        reason = None
        for arg in exc.args:
            if isinstance(arg, u3.MaxRetryError):
                reason = arg.reason
            elif isinstance(arg, BaseException):
                reason = arg
        if isinstance(reason, (u3.NewConnectionError, u3.ConnectTimeoutError)):
            return "connection_refused", False
        return "dropped_connection", True
    # ChunkedEncodingError, ContentDecodingError, …: the response was cut short
    return "dropped_connection", True
