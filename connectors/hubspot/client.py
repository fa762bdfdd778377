"""The HubSpot CRM v3 client callers use: reads, search and writes over one paced, retried transport."""
from __future__ import annotations

from typing import Any

from trueup.connectors.hubspot.reads import RecordReads
from trueup.connectors.hubspot.search import ModifiedSearch, SearchStats
from trueup.connectors.hubspot.writes import BatchWrites


class HubSpotClient(RecordReads, ModifiedSearch, BatchWrites):
    """HubSpot CRM v3 client. Thread-safe; share one per token.

    Options (rate limits, concurrency, timeouts, retries) are those of
    :class:`~connectors.hubspot.transport.CrmTransport`.
    """

    def __init__(self, base_url: str, token: str, **options: Any) -> None:
        super().__init__(base_url, token, **options)
        self.last_search_stats: SearchStats | None = None

    def __repr__(self) -> str:
        return f"HubSpotClient(base_url={self.base_url!r})"
