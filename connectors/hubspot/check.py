"""The one-request check that the CRM is there and takes the token, before a run relies on it."""
from __future__ import annotations

import requests

from trueup.connectors.errors import PermanentError, TransientError
from trueup.connectors.hubspot.connection import TOKEN_HINT, classify_network_failure, require_safe_url


def check_crm(base_url: str, token: str, timeout: float = 5.0) -> None:
    """One request, no retries: is the CRM there, and does it take the token? Raises a one-line
    TransientError (unreachable, overloaded) or PermanentError (token refused) — so a run fails
    in seconds instead of after minutes of retries."""
    require_safe_url(base_url)
    url = base_url.rstrip("/") + "/crm/v3/objects/companies"
    try:
        with requests.Session() as session:
            session.trust_env = False
            resp = session.get(url, params={"limit": 1}, timeout=timeout,
                               headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
    except requests.RequestException as exc:
        kind, maybe_answered = classify_network_failure(exc)
        # category "unreachable": the request reached no server (refused, no connection in time);
        # else something answered, badly (a dropped or slow answer), which retries may get past
        raise TransientError(f"CRM at {base_url} is not reachable ({kind.replace('_', ' ')})",
                             category=kind if maybe_answered else "unreachable") from None
    if resp.status_code == 401:
        raise PermanentError(f"CRM at {base_url} rejected the token (401) — {TOKEN_HINT}", status=401)
    if resp.status_code == 403:
        raise PermanentError(f"CRM at {base_url} refused the token (403): it lacks a required scope — {TOKEN_HINT}",
                             status=403)
    if resp.status_code >= 500:
        raise TransientError(f"CRM at {base_url} answers {resp.status_code}: try again later", status=resp.status_code)
    if resp.status_code == 404:
        raise PermanentError(f"CRM at {base_url} has no CRM v3 API (404) — check TRUEUP_CRM_BASE_URL", status=404)
