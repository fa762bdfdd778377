"""HubSpot CRM v3 client (the subset in docs/architecture.md, "The CRM") — knows nothing of Dagster.

Works unchanged against a real portal (``https://api.hubapi.com`` + a private-app token)
and against the local sandbox. One module per concern:

* :mod:`.transport` — the HTTP session, pacing (:class:`~connectors.throttle.Throttle`,
  concurrency), classified errors and retries with backoff; every request goes through it;
* :mod:`.connection` — where the token may be sent, what a transport failure means;
  :mod:`.check` — the one-request reachability and token check (:func:`check_crm`);
* :mod:`.reads` — lists (``after`` cursors), batch reads by id, associations;
* :mod:`.search` — search by modification time, split at the 10,000-result cap, keyset walk
  of a crowded millisecond;
* :mod:`.writes` — batch upsert/update, 100 per request; a 207 maps to :class:`BatchOutcome`;
* :mod:`.client` — :class:`HubSpotClient`, the one class callers use, composed of the above.

The token is only ever placed in the ``Authorization`` header; it is never logged and is
scrubbed from every message this package builds.
"""
from __future__ import annotations

# callers look names up here (``trueup.connectors.hubspot.check_crm`` is the patch point tests use)
from trueup.connectors.hubspot.check import check_crm
from trueup.connectors.hubspot.client import HubSpotClient
from trueup.connectors.hubspot.connection import TOKEN_HINT, classify_network_failure, require_safe_url
from trueup.connectors.hubspot.limits import ASSOCIATION_BATCH_SIZE, BATCH_SIZE, LIST_PAGE, SEARCH_CAP, SEARCH_PAGE
from trueup.connectors.hubspot.search import SearchRun, SearchStats, SearchWindow, default_modified_property
from trueup.connectors.hubspot.stats import ClientStats
from trueup.connectors.hubspot.timestamps import to_epoch_ms
from trueup.connectors.hubspot.transport import RETRYABLE_STATUS
from trueup.connectors.hubspot.writes import BatchOutcome

__all__ = [
    "ASSOCIATION_BATCH_SIZE",
    "BATCH_SIZE",
    "BatchOutcome",
    "ClientStats",
    "HubSpotClient",
    "LIST_PAGE",
    "RETRYABLE_STATUS",
    "SEARCH_CAP",
    "SEARCH_PAGE",
    "SearchRun",
    "SearchStats",
    "SearchWindow",
    "TOKEN_HINT",
    "check_crm",
    "classify_network_failure",
    "default_modified_property",
    "require_safe_url",
    "to_epoch_ms",
]
