"""Helpers every benchmark shares: timers, memory readings from /proc, the sandbox admin API
and the plain-text result table."""
from __future__ import annotations

import time
from pathlib import Path


class Timer:
    """Seconds since it was made: `t = Timer(); …; t()`."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.t0


def status_mb(field: str = "VmRSS", pid: int | str = "self") -> float | None:
    """A memory field of /proc/<pid>/status in MB (VmRSS now, VmHWM the peak); None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def sandbox_admin(base: str, token: str, method: str, path: str, body: dict | None = None) -> dict:
    """A call to the sandbox CRM's admin/stats API."""
    import requests

    r = requests.request(method, base + path, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    r.raise_for_status()
    return r.json()


def text_table(headers: list[str], rows: list[list]) -> str:
    """Rows under headers, first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *map(line, cells[1:])])
