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


def test_searches_are_spaced_across_processes_not_burst(tmp_path):
    """Searches (HubSpot: 5 per second) share one next send time: each reservation waits until
    `spacing` after the one before, whichever process made it; one process alone waits no more
    than its own spacing would make it."""
    clock = Clock(100.0)
    one, two = FileBudget(tmp_path, "k", clock=clock), FileBudget(tmp_path, "k", clock=clock)
    waits = [budget.reserve("search", 0.25) for budget in (one, two, one, two)]
    assert waits == [0.0, 0.25, 0.5, 0.75]        # four processes' searches one after another
    clock.t = 102.0                                 # long after: no wait again
    assert one.reserve("search", 0.25) == 0.0
