"""The `resolve_held_write` Dagster job: what `trueup writes release|link|undo` does, from the UI
(launchpad) — the same ledger decisions, recorded in ops.sor_writes with actor and time; a key
with no held write or a link without an order number fails the run with one line, not retried."""
from __future__ import annotations

import json

import pytest

from trueup.assets.publish.definitions import resolve_held_write
from trueup.assets.publish.ledger import Write, plan
from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.resources import WarehouseResource
from trueup.orchestration.runner import failure_reason

HELD = "possible manual duplicate: ERP order SO-7000001 (same customer, amount and day, no deal id)"


def held_write(deal: str, amount: str) -> Write:
    return Write(f"erp-order:crm-deal:{deal}", "erp", "sales_orders", "create", deal,
                 {"crm_deal_id": deal, "total_amount": amount, "currency": "USD", "customer_number": "C1001"})


@pytest.fixture
def warehouse(tmp_path):
    """A warehouse whose last night held two deals' orders for a person."""
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    wh = Warehouse(url)
    plan(wh, [held_write("20000123", "4321.00"), held_write("20000124", "5432.00")], run_id="night-1",
         state="held", hold_reason=HELD, business_date="2026-09-03")
    wh.dispose()
    return url


def resolve(url: str, **config):
    return resolve_held_write.execute_in_process(
        run_config={"ops": {"resolve_held_write_op": {"config": config}}},
        resources={"warehouse": WarehouseResource(url=url)}, raise_on_error=False)


def ledger_row(url: str, key: str) -> dict:
    wh = Warehouse(url)
    try:
        rows = wh.query_df("SELECT state, decision, decided_by, decided_at, linked_order_number, payload "
                           "FROM ops.sor_writes WHERE idempotency_key = :k", {"k": key})
    finally:
        wh.dispose()
    assert len(rows) == 1, rows
    return rows.iloc[0].to_dict()


def the_failure(result) -> str:
    """The run's one-line reason; and the step was not retried."""
    assert not result.success
    events = result.all_events
    assert not [e for e in events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    [failure] = [e for e in events if e.is_step_failure]
    line = failure_reason(failure)
    assert "\n" not in line and "Traceback" not in line
    return line


def test_release_sends_a_held_write_after_all(warehouse):
    key = "erp-order:crm-deal:20000123"
    result = resolve(warehouse, idempotency_key=key, action="release", actor="ops@x")
    assert result.success
    assert result.output_for_node("resolve_held_write_op") == (f"{key}: released (by ops@x); "
                                                               f"the next publish run sends it")
    row = ledger_row(warehouse, key)
    assert (row["state"], row["decision"], row["decided_by"]) == ("planned", "released", "ops@x")
    assert row["decided_at"] is not None and row["linked_order_number"] is None
    assert json.loads(row["payload"])["total_amount"] == "4321.00"   # the payload released is the one held
    other = ledger_row(warehouse, "erp-order:crm-deal:20000124")
    assert (other["state"], other["decided_by"]) == ("held", None)   # only the key named


def test_link_records_the_existing_order_and_undo_holds_it_again(warehouse):
    key = "erp-order:crm-deal:20000124"
    result = resolve(warehouse, idempotency_key=key, action="link", order_number="SO-7000002", actor="ops@x")
    assert result.success
    assert "linked to SO-7000002 (by ops@x); nothing will be sent for it" in result.output_for_node(
        "resolve_held_write_op")
    row = ledger_row(warehouse, key)
    assert (row["state"], row["decision"], row["decided_by"], row["linked_order_number"]) == (
        "linked", "linked to SO-7000002", "ops@x", "SO-7000002")

    result = resolve(warehouse, idempotency_key=key, action="undo", actor="ops@y")
    assert result.success
    assert result.output_for_node("resolve_held_write_op") == f"{key}: held again (by ops@y; was linked to SO-7000002)"
    row = ledger_row(warehouse, key)
    assert (row["state"], row["decision"], row["decided_by"], row["linked_order_number"]) == (
        "held", "undone (linked to SO-7000002)", "ops@y", None)


def test_an_unknown_key_fails_with_one_line_and_changes_nothing(warehouse):
    result = resolve(warehouse, idempotency_key="erp-order:crm-deal:0", action="release", actor="ops@x")
    assert the_failure(result) == "no held write with key erp-order:crm-deal:0 (see `trueup writes list`)"
    # undo of a write nobody released or linked
    result = resolve(warehouse, idempotency_key="erp-order:crm-deal:20000123", action="undo", actor="ops@x")
    assert "no released or linked write with key erp-order:crm-deal:20000123" in the_failure(result)
    for deal in ("20000123", "20000124"):
        row = ledger_row(warehouse, f"erp-order:crm-deal:{deal}")
        assert (row["state"], row["decision"], row["decided_by"]) == ("held", None, None)


@pytest.mark.parametrize("config, reason", [
    ({"action": "link"}, "linking erp-order:crm-deal:20000124 needs order_number"),
    ({"action": "link", "order_number": "7000002"}, "'7000002' is not an ERP order number (SO-<digits>)"),
    ({"action": "release", "order_number": "SO-7000002"}, "order_number is only for action link"),
    ({"action": "link", "order_number": "SO-7000002", "actor": " "}, "needs an actor"),
])
def test_a_link_without_a_proper_order_number_fails_with_one_line(warehouse, config, reason):
    key = "erp-order:crm-deal:20000124"
    result = resolve(warehouse, **{"idempotency_key": key, "actor": "ops@x", **config})
    assert reason in the_failure(result)
    row = ledger_row(warehouse, key)
    assert (row["state"], row["decided_by"], row["linked_order_number"]) == ("held", None, None)


def test_an_action_outside_release_link_undo_is_refused_by_the_config():
    from dagster import DagsterInvalidConfigError

    with pytest.raises(DagsterInvalidConfigError, match="not in enum"):
        resolve("duckdb:///unused.duckdb", idempotency_key="k", action="approve", actor="ops@x")


def test_the_job_is_in_the_code_location_and_runs_through_the_instance(warehouse, tmp_path, monkeypatch):
    """Registered beside approve_write, so the UI lists it; a run is recorded in DAGSTER_HOME."""
    from dagster import DagsterInstance, DagsterRunStatus

    from trueup.orchestration.config import load_settings
    from trueup.orchestration.definitions import build_definitions
    from trueup.orchestration.runner import run_unpartitioned_job

    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home" / "dagster"))
    monkeypatch.setenv("TRUEUP_WAREHOUSE_URL", warehouse)
    monkeypatch.setenv("TRUEUP_START_DATE", "2026-09-01")
    job = build_definitions().resolve_job_def("resolve_held_write")
    assert {"idempotency_key", "action", "order_number", "actor"} <= set(
        job.run_config_schema.config_type.fields["ops"].config_type.fields["resolve_held_write_op"]
        .config_type.fields["config"].config_type.fields)
    key = "erp-order:crm-deal:20000124"
    outcome = run_unpartitioned_job(load_settings(), "resolve_held_write", run_config={"ops": {"resolve_held_write_op": {
        "config": {"idempotency_key": key, "action": "link", "order_number": "SO-7000002", "actor": "ops@ui"}}}})
    assert outcome.success, outcome.error
    assert outcome.summary.startswith(f"{key}: linked to SO-7000002 (by ops@ui)")
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(outcome.run_id)
        assert run.job_name == "resolve_held_write" and run.status == DagsterRunStatus.SUCCESS
    row = ledger_row(warehouse, key)
    assert (row["state"], row["decided_by"], row["linked_order_number"]) == ("linked", "ops@ui", "SO-7000002")
    outcome = run_unpartitioned_job(load_settings(), "resolve_held_write", run_config={"ops": {"resolve_held_write_op": {
        "config": {"idempotency_key": "erp-order:crm-deal:0", "action": "release", "actor": "ops@ui"}}}})
    assert not outcome.success
    assert outcome.error == ("resolve_held_write_op: no held write with key erp-order:crm-deal:0 "
                             "(see `trueup writes list`)")
