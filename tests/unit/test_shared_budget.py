"""The shared CRM budget's window (connectors/shared_budget.py), on a clock of the test's own: at
most `limit` sends in any window, a send forgotten only once a whole window has passed, the wait
it answers is when a slot frees, and two processes' budgets for the same CRM are one."""
from __future__ import annotations

from trueup.connectors.shared_budget import FileBudget, budget_key


class Clock:
    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_at_most_limit_in_any_window_and_the_wait_is_when_a_slot_frees(tmp_path):
    clock = Clock(1_000.03)
    budget = FileBudget(tmp_path, "k", clock=clock)
    assert [budget.take("requests", 3, 10.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = budget.take("requests", 3, 10.0)
    assert 10.0 <= wait <= 10.1 + 1e-5          # never early; at most one bucket (0.1 s) late
    clock.t += 9.99
    assert budget.take("requests", 3, 10.0) > 0  # a window has not passed yet
    clock.t = 1_000.03 + wait
    assert budget.take("requests", 3, 10.0) == 0.0
    # a different limit name is a budget of its own
    assert budget.take("search", 1, 1.0) == 0.0 and budget.take("search", 1, 1.0) > 0


def test_two_processes_of_one_crm_share_the_file_and_other_crms_do_not(tmp_path):
    clock = Clock(50.0)
    key = budget_key("https://api.hubapi.com/", "token-a")
    assert key == budget_key("https://api.hubapi.com", "token-a") and key != budget_key("https://api.hubapi.com",
                                                                                        "token-b")
    one, two = FileBudget(tmp_path, key, clock=clock), FileBudget(tmp_path, key, clock=clock)
    other = FileBudget(tmp_path, budget_key("https://api.hubapi.com", "token-b"), clock=clock)
    assert one.take("requests", 2, 10.0) == 0.0 and two.take("requests", 2, 10.0) == 0.0
    assert one.take("requests", 2, 10.0) > 0 and two.take("requests", 2, 10.0) > 0
    assert other.take("requests", 2, 10.0) == 0.0
    assert oct(one.path.stat().st_mode & 0o777) == "0o600"   # private to the user


def test_two_processes_searches_share_one_window_a_little_longer_than_a_second(tmp_path):
    """Two processes' throttles searching the same CRM (HubSpot: 5 searches per second): five
    searches go at once whichever process makes them, the sixth waits until the window (1/0.95 s:
    the latency margin the shared budget keeps, as it stamps a slot when it is taken) has passed."""
    from trueup.connectors.throttle import Throttle

    clock = Clock(100.0)

    def sleep(s: float) -> None:
        clock.t += s

    one, two = (Throttle(100, 10.0, 5, clock=clock, sleep=sleep, shared=FileBudget(tmp_path, "k", clock=clock))
                for _ in range(2))
    waits = [th.acquire(search=True).waited for th in (one, two, one, two, one)]
    assert waits == [0.0] * 5
    wait = two.acquire(search=True).waited
    assert 1 / 0.95 <= wait <= 1 / 0.95 + 0.011
