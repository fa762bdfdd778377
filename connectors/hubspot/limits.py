"""HubSpot's page and batch sizes (docs/architecture.md, "The CRM") that the client's requests are cut to."""
from __future__ import annotations

SEARCH_CAP = 10_000  # results one search query can page through (after >= cap → 400)
SEARCH_PAGE = 200
LIST_PAGE = 100
BATCH_SIZE = 100
ASSOCIATION_BATCH_SIZE = 1000
