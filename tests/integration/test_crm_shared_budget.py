"""One CRM rate budget for every process calling the same CRM (connectors/shared_budget.py; issue
20 item 3). Four processes read the sandbox CRM at once, the CRM set to HubSpot's limits (100
requests per rolling ten seconds per token). Each paces itself under the limit, as one run's
client always has; without the shared budget the four together are four times over it and
the CRM answers 429s. With it — a file under the Trueup home (one machine) or the PostgreSQL
warehouse (any machine) — no 429 at all, and the four together use the limit within 10 %: over
the first two whole windows (a rolling window lets each window's budget go at once, so the
sends come in a burst per window) they send at least 90 % of what the limit allows."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from trueup.connectors.hubspot import HubSpotClient

READER = """
import json, sys, time
from pathlib import Path
from trueup.connectors.hubspot import HubSpotClient
from trueup.connectors.shared_budget import FileBudget, PostgresBudget, budget_key
base, token, kind, where, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
key = budget_key(base, token)
if kind == "file":
    budget = FileBudget(Path(where), key)
elif kind == "postgresql":
    import sqlalchemy as sa
    budget = PostgresBudget(sa.create_engine(where), key)
else:
    budget = None
client = HubSpotClient(base, token, requests_per_10s=100, searches_per_second=5, max_concurrency=2,
                       shared_budget=budget, max_retries=8)
sent = []   # when each request was answered (sent a few ms before: the sandbox answers at once)
for i in range(n):
    client.batch_read("deals", [str(i % 50 + 1)], ["dealname"])
    sent.append(time.time())
stats = client.stats.snapshot()
print(json.dumps({"sent": sent, "requests": stats["requests"], "429": stats["responses_429_total"],
                  "end": time.time()}))
"""


def _four_readers(sandbox, kind: str, where: str, n: int) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    procs = [subprocess.Popen([sys.executable, "-c", READER, sandbox.base_url, sandbox.token, kind, where, str(n)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        assert p.returncode == 0, stderr[-3000:]
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def _two_windows(results: list[dict], window_s: float = 10.0) -> tuple[int, int]:
    """(requests the four sent in the first two whole windows from the first send, the most
    they sent in any rolling window)."""
    sends = sorted(t for r in results for t in r["sent"])
    first = sends[0]
    in_two = sum(1 for t in sends if t < first + 2 * window_s)
    busiest = max(sum(1 for u in sends if t <= u < t + window_s) for t in sends)
    return in_two, busiest


@pytest.fixture
def hubspot_limits(crm_sandbox):
    crm_sandbox.set_knobs(rate_limit_10s=100, search_per_second=5)
    return crm_sandbox


def test_without_a_shared_budget_four_processes_overrun_the_crm(hubspot_limits):
    results = _four_readers(hubspot_limits, "none", "-", 40)
    assert sum(r["429"] for r in results) > 0   # the problem the shared budget solves


@pytest.mark.parametrize("kind", ["file", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_four_processes_share_one_budget_no_429_and_the_limits_rate(hubspot_limits, kind, tmp_path, request):
    where = str(tmp_path / "state") if kind == "file" else request.getfixturevalue("pg_url")
    results = _four_readers(hubspot_limits, kind, where, 60)   # 240 in all: more than two windows allow
    assert sum(r["requests"] for r in results) == 240 and sum(r["429"] for r in results) == 0
    in_two, busiest = _two_windows(results)
    print(f"\n{kind}: 240 requests, no 429; {in_two} in the first two windows (the limit allows 200), "
          f"at most {busiest} in any ten seconds")
    assert 180 <= in_two <= 200 and busiest <= 100


def test_a_client_without_limits_to_share_is_unchanged(crm_sandbox, tmp_path):
    """The budget is an addition: a client given none paces itself alone, as before."""
    client = HubSpotClient(crm_sandbox.base_url, crm_sandbox.token)
    assert client.throttle.shared is None
    assert client.batch_read("deals", ["1"], ["dealname"])
    assert not list(Path(tmp_path).glob("**/crm-budget-*"))


@pytest.mark.postgres
def test_searches_share_one_window_across_sessions_on_postgresql(pg_url):
    """The searches' window is one in the warehouse, whichever session takes a slot."""
    import sqlalchemy as sa

    from trueup.connectors.shared_budget import PostgresBudget

    one, two = PostgresBudget(sa.create_engine(pg_url), "k"), PostgresBudget(sa.create_engine(pg_url), "k")
    waits = [budget.take("searches", 2, 0.5) for budget in (one, two, one)]
    assert waits[:2] == [0.0, 0.0] and 0.4 <= waits[2] <= 0.51, waits
