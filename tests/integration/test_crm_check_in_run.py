"""A run started from Dagster itself (the UI, the schedule, a sensor — no `trueup nightly` to check
the CRM first) checks the CRM once when it first needs it: a refused token or a CRM nobody
answers for fails the run with one line and no retries, instead of retrying for minutes. The
runs here execute the nightly job's CRM ingest steps in process through the code location's
definitions, as a launched run does."""
from __future__ import annotations

import socket

import pytest
from dagster import AssetKey, DagsterInstance

from trueup.orchestration.runner import failure_reason
from tests.fixtures_crm import crm_sandbox  # noqa: F401 - fixture

CRM_ASSETS = [AssetKey(["raw", o]) for o in ("crm_companies", "crm_contacts", "crm_deals")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def checks(monkeypatch) -> list:
    """Every CRM check made (connectors.hubspot.check_crm), with what it raised (None: passed)."""
    import trueup.connectors.hubspot as hubspot

    made, real = [], hubspot.check_crm

    def check(*args, **kw):
        try:
            real(*args, **kw)
        except Exception as exc:
            made.append(exc)
            raise
        made.append(None)

    monkeypatch.setattr(hubspot, "check_crm", check)
    return made


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A fresh TRUEUP_HOME; the test sets where the CRM is and which token is used."""
    for k in ("TRUEUP_CRM_BASE_URL", "TRUEUP_CRM_TOKEN", "TRUEUP_WAREHOUSE_URL", "TRUEUP_ERP_URL", "DAGSTER_HOME"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRUEUP_START_DATE", "2026-09-01")
    return monkeypatch


def run_crm_ingest(tmp_path):
    from trueup.orchestration.definitions import build_definitions

    job = build_definitions().resolve_job_def("nightly_sync")
    (tmp_path / "dagster").mkdir(exist_ok=True)
    with DagsterInstance.local_temp(str(tmp_path / "dagster")) as instance:
        return job.execute_in_process(partition_key="2026-09-03", asset_selection=CRM_ASSETS, instance=instance,
                                      raise_on_error=False)


def sync_runs(result) -> set[tuple]:
    """What ops.sync_runs recorded for the run's CRM steps: (asset, attempt, status, error class)."""
    from trueup.connectors.warehouse import Warehouse
    from trueup.orchestration.config import load_settings

    wh = Warehouse(load_settings().warehouse_url)
    try:
        df = wh.query_df("SELECT asset, attempt, status, error_class FROM ops.sync_runs WHERE run_id = :r",
                         {"r": result.run_id})
    finally:
        wh.dispose()
    return set(df.itertuples(index=False, name=None))


def crm_step_failures(result) -> set[str]:
    """The one-line reason of each CRM step's failure (all three fail, and the same way); no step retried."""
    events = result.all_events
    assert not result.success
    assert not [e.step_key for e in events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    failures = {e.step_key: failure_reason(e) for e in events if e.is_step_failure}
    assert set(failures) == {"raw__crm_companies", "raw__crm_contacts", "raw__crm_deals"}, failures
    for line in failures.values():
        assert "\n" not in line and "Traceback" not in line
    return set(failures.values())


def test_a_refused_token_fails_the_run_with_one_line_and_one_request(crm_sandbox, env, tmp_path, checks):
    env.setenv("TRUEUP_CRM_BASE_URL", crm_sandbox.base_url)
    env.setenv("TRUEUP_CRM_TOKEN", "not-the-token")
    result = run_crm_ingest(tmp_path)
    assert crm_step_failures(result) == {
        f"CRM at {crm_sandbox.base_url} rejected the token (401) — check TRUEUP_CRM_TOKEN"}
    assert [type(e).__name__ for e in checks] == ["PermanentError"]   # checked once for the whole run
    assert sync_runs(result) == {(f"raw/crm_{o}", 1, "failure", "permanent") for o in ("companies", "contacts", "deals")}


def test_a_crm_nobody_answers_for_fails_the_run_with_one_line_not_after_retries(env, tmp_path):
    url = f"http://127.0.0.1:{free_port()}"   # nothing listens there
    env.setenv("TRUEUP_CRM_BASE_URL", url)
    env.setenv("TRUEUP_CRM_TOKEN", "x" * 20)
    result = run_crm_ingest(tmp_path)
    assert crm_step_failures(result) == {f"CRM at {url} is not reachable (connection refused)"}
    # recorded as what it is (no answer: transient), though this run does not retry it
    assert sync_runs(result) == {(f"raw/crm_{o}", 1, "failure", "transient") for o in ("companies", "contacts", "deals")}


def test_the_sandbox_not_running_is_named_as_such(env, tmp_path):
    port = free_port()
    env.setenv("TRUEUP_SANDBOX_PORT", str(port))
    result = run_crm_ingest(tmp_path)
    assert crm_step_failures(result) == {
        f"sandbox CRM is not running at http://127.0.0.1:{port}: start it with `trueup sandbox up`"}


def test_a_crm_that_answers_badly_is_left_to_the_retries(crm_sandbox, env, checks):
    """The check fails fast only on what retrying cannot mend: a 5xx at the check is no reason to
    give up the night (the client retries it), nor, of course, a right token."""
    from trueup.orchestration.resources import CrmResource

    env.setenv("TRUEUP_CRM_BASE_URL", crm_sandbox.base_url)
    env.setenv("TRUEUP_CRM_TOKEN", crm_sandbox.token)
    crm_sandbox.set_knobs(error_rate_5xx=1.0)
    assert CrmResource().client() is not None
    [answer] = checks
    assert type(answer).__name__ == "TransientError" and answer.status in (502, 503, 504)
    crm_sandbox.set_knobs(error_rate_5xx=0.0)
    checks.clear()
    resource = CrmResource()
    assert resource.client() is resource.client()            # one check, one client per run
    assert checks == [None]
