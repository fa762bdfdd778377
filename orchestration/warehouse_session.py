"""The warehouse for one short piece of work outside a run — a `trueup` command, a sensor's look —
disposed when the work ends. A run gets its warehouse from the `warehouse` resource
(orchestration/resources.py), which opens it the same way.

Kept free of Dagster imports: the CLI's quick commands use it without loading Dagster."""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from trueup.connectors.warehouse import Warehouse


def connect_warehouse(url: str, lock_timeout_s: float | None = None) -> "Warehouse":
    """The warehouse at `url`; `lock_timeout_s`: how long to wait for DuckDB's file lock
    (default: the warehouse's own, 120 s)."""
    from trueup.connectors.warehouse import Warehouse

    return Warehouse(url) if lock_timeout_s is None else Warehouse(url, lock_timeout_s=lock_timeout_s)


@contextlib.contextmanager
def warehouse_session(url: str, lock_timeout_s: float | None = None) -> Iterator["Warehouse"]:
    """The warehouse at `url` for the block, disposed after (whatever happens in it)."""
    wh = connect_warehouse(url, lock_timeout_s)
    try:
        yield wh
    finally:
        wh.dispose()
