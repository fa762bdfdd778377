"""Run-failure alerting: ops.alerts row + optional JSON webhook, and the Dagster sensor on
a real failed run."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from trueup.connectors.alert_sink import classify_failure, record_alert, redact
from tests.world_fixtures import tiny_world  # noqa: F401 - fixture


class _Receiver:
    """A local webhook receiver on 127.0.0.1 (http.server in a thread)."""

    def __init__(self, status: int = 200):
        self.bodies: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append({"content_type": self.headers.get("Content-Type"),
                                        "json": json.loads(self.rfile.read(length))})
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    r = _Receiver()
    yield r
    r.stop()


@pytest.fixture
def wh(tmp_path):
    from trueup.connectors.warehouse import Warehouse

    w = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    yield w
    w.dispose()


def test_record_alert_writes_row_and_posts_json(wh, receiver, monkeypatch):
    monkeypatch.setenv("TRUEUP_CRM_TOKEN", "sekret-token-123456")
    alert = record_alert(wh, run_id="r-1", job="nightly_sync", partition="2026-09-02",
                         message="raw__crm_deals: CRM answered HTTP 401 for deals (token sekret-token-123456) "
                                 "via postgresql://bob:hunter22@db/x",
                         webhook_url=receiver.url)
    assert alert.error_class == "permanent"
    rows = wh.query_df("SELECT * FROM ops.alerts").to_dict("records")
    assert len(rows) == 1
    row = rows[0]
    assert (row["run_id"], row["job"], row["partition"], row["error_class"]) == \
        ("r-1", "nightly_sync", "2026-09-02", "permanent")
    assert row["alert_id"] == alert.alert_id and row["created_at"] is not None
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert body["content_type"] == "application/json"
    payload = body["json"]
    assert payload["alert_id"] == alert.alert_id and payload["job"] == "nightly_sync"
    assert payload["partition"] == "2026-09-02" and payload["error_class"] == "permanent"
    dumped = json.dumps(payload) + row["message"]
    assert "sekret-token-123456" not in dumped and "hunter22" not in dumped


def test_webhook_failure_is_logged_not_raised(wh, caplog):
    # nothing listens on this port: the row is still written, nothing raised
    alert = record_alert(wh, run_id="r-2", job="reconcile", partition=None, message="Timeout reading ERP",
                         webhook_url="http://127.0.0.1:9/none")
    assert alert.error_class == "transient"
    assert wh.scalar("SELECT count(*) FROM ops.alerts WHERE run_id = 'r-2'") == 1
    assert any("alert webhook failed" in r.getMessage() for r in caplog.records)


def test_no_webhook_when_unset(wh, receiver):
    record_alert(wh, run_id="r-3", job="j", partition=None, message="boom")
    assert receiver.bodies == []
    assert wh.scalar("SELECT count(*) FROM ops.alerts") == 1


def test_classify_failure():
    assert classify_failure("x", "TransientError") == "transient"
    assert classify_failure("CRM answered HTTP 503") == "transient"
    assert classify_failure("CRM answered HTTP 403 forbidden") == "permanent"
    assert classify_failure("rows held", "HumanRequiredError") == "human_required"
    assert redact("https://u:p4ssword@host/x") == "https://u:***@host/x"


def test_sensor_alerts_on_real_failed_run(tiny_world, receiver, monkeypatch):
    from dagster import DagsterEventType, DagsterInstance, build_run_status_sensor_context

    from trueup.connectors.warehouse import Warehouse
    from trueup.orchestration.alerts import build_alert_sensor
    from trueup.orchestration.config import load_settings
    from trueup.orchestration.resources import default_resources
    from trueup.orchestration.runner import run_job

    monkeypatch.setenv("TRUEUP_CRM_TOKEN", "wrong-token-" + "x" * 8)
    monkeypatch.setenv("TRUEUP_ALERT_WEBHOOK_URL", receiver.url)
    day = tiny_world.days()[0]
    outcome = run_job(load_settings(), "nightly_sync", day)
    assert not outcome.success

    sensor = build_alert_sensor()
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(outcome.run_id)
        failure = instance.all_logs(outcome.run_id, of_type=DagsterEventType.RUN_FAILURE)
        assert failure, "the run recorded no RUN_FAILURE event"
        with build_run_status_sensor_context(
                sensor_name=sensor.name, dagster_event=failure[0].dagster_event, dagster_instance=instance,
                dagster_run=run, resources=default_resources()).for_run_failure() as context:
            sensor(context)

    wh = Warehouse(load_settings().warehouse_url)
    rows = wh.query_df("SELECT * FROM ops.alerts WHERE run_id = :r", {"r": outcome.run_id}).to_dict("records")
    wh.dispose()
    assert len(rows) == 1, rows
    assert rows[0]["job"] == "nightly_sync" and rows[0]["partition"] == day.isoformat()
    assert rows[0]["error_class"] == "permanent", rows[0]
    assert "crm" in rows[0]["message"].lower(), rows[0]
    assert "wrong-token" not in rows[0]["message"]
    assert [b["json"]["run_id"] for b in receiver.bodies] == [outcome.run_id]
