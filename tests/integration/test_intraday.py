"""The intraday path for closed-won deals: the sensor finds a deal that closed won minutes ago and
starts a run that posts its ERP order through the night's own gates and ledger, stamped with the
moment it was made; the night of the same day then posts nothing twice; holds and approvals are
the night's; the sensor is stopped unless TRUEUP_INTRADAY is on.

The sandbox world lives in September 2026 (a simulated history), so the sensor is given that
world's clock (`clock=`) and passes it to the run (`as_of`) — in production both use the wall clock.
"""
from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest
import sqlalchemy as sa
from dagster import DagsterInstance, DefaultSensorStatus, RunRequest, SkipReason, build_sensor_context

from trueup.connectors.erp_schema import make_erp_engine
from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import ConfigError, load_settings
from trueup.orchestration.runner import run_job
from trueup.sandbox.crm.store import CrmStore
from trueup.sandbox.generator.world import read_defects
from tests.world_fixtures import tiny_world  # noqa: F401 - fixture

pytestmark = pytest.mark.slow
UTC = dt.timezone.utc


# ------------------------------------------------------------------------------------- helpers
def at(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


def close_won(w, deal_id: str, when: dt.datetime, amount: str) -> None:
    """The sales rep marks the deal closed won in the CRM at `when` (the world's time)."""
    store = CrmStore(w.paths.crm_db)
    rec = store.get("deals", int(deal_id))
    ms = int(when.timestamp() * 1000)
    store.load_records("deals", pd.DataFrame([{
        "id": int(deal_id), "created_ms": rec["created_ms"], "updated_ms": ms, "dealstage": "closedwon",
        "closedate": when.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "amount": amount, "deal_currency_code": "USD"}]))
    store.close()


def open_deals_of_one_company(w, n: int) -> tuple[str, list[str]]:
    """A company with no injected defect and at least `n` open deals without defects: (company, deals)."""
    bad = {str(d["business_key"]) for d in read_defects(w.paths)}
    store = CrmStore(w.paths.crm_db)
    deals = store.all_records("deals", archived=False)
    companies = store.all_records("companies", archived=False)
    store.close()
    good = set(companies["id"].astype(str)) - bad
    deals = deals[~deals["id"].astype(str).isin(bad) & deals["company_id"].notna()
                  & ~deals["dealstage"].isin(["closedwon", "closedlost"])]
    deals = deals.assign(company=deals["company_id"].astype("Int64").astype(str))
    deals = deals[deals["company"].isin(good)]
    for company, group in deals.groupby("company"):
        if len(group) >= n:
            return company, sorted(group["id"].astype(str))[:n]
    raise AssertionError(f"no company with {n} open deals in this world")


def erp_orders(w) -> pd.DataFrame:
    engine = make_erp_engine(w.paths.erp_url)
    with engine.connect() as conn:
        df = pd.read_sql(sa.text("SELECT order_number, crm_deal_id, customer_number, total_amount, source "
                                 "FROM sales_orders"), conn)
    engine.dispose()
    return df


def ledger(where: str = "1 = 1", **params) -> pd.DataFrame:
    wh = Warehouse(load_settings().warehouse_url)
    try:
        return wh.query_df(f"SELECT * FROM ops.sor_writes WHERE {where} ORDER BY created_at", params)
    finally:
        wh.dispose()


def sensor_for(clock_box: list):
    """The intraday sensor as the code location builds it, looking at the world's clock `clock_box[0]`."""
    from trueup.orchestration.intraday import build_intraday_sensor, intraday_publish

    return build_intraday_sensor(intraday_publish, running=True, interval_seconds=120, clock=lambda: clock_box[0])


def tick(sensor, cursor: str | None):
    """One evaluation, as the daemon makes it: (run requests, skip reason, new cursor)."""
    from trueup.orchestration.resources import default_resources

    with DagsterInstance.ephemeral() as instance, \
            build_sensor_context(instance=instance, cursor=cursor, resources=default_resources()) as ctx:
        result = sensor(ctx)
    if isinstance(result, SkipReason):
        return [], result.skip_message, cursor
    requests = [r for r in (result.run_requests or []) if isinstance(r, RunRequest)]
    skip = result.skip_reason.skip_message if result.skip_reason else None
    return requests, skip, result.cursor


def execute(request: RunRequest):
    """The run the daemon would launch for the request, executed here through the instance."""
    from trueup.orchestration.definitions import build_definitions
    from trueup.orchestration.runner import open_instance

    job = build_definitions().resolve_job_def("intraday_publish")
    with open_instance(load_settings()) as instance:
        result = job.execute_in_process(run_config=request.run_config, tags=request.tags, instance=instance,
                                        raise_on_error=False)
    assert result.success, [str(e.event_specific_data.error) for e in result.all_events if e.is_step_failure]
    return result


@pytest.fixture
def day_three(tiny_world):
    """The tiny world (2026-09-01..03, go-live 09-02) run nightly through 09-02, with one deal of a
    company won on 09-02 (so the ERP knows its customer, C8<company>). Now it is 09-03, evening:
    the world's own activity of the day is over (it ends before 20:00)."""
    w = tiny_world
    day1, day2, day3 = w.days()
    company, deals = open_deals_of_one_company(w, 3)
    close_won(w, deals[0], at(day2, 10), "1200.00")
    outcome = run_job(load_settings(), "nightly_sync", day1, day2)
    assert outcome.success, outcome.error
    assert deals[0] in set(erp_orders(w)["crm_deal_id"].dropna())
    return w, day3, company, deals[1:]


# ---------------------------------------------------------------------------------- the sensor
def test_the_sensor_skips_until_a_deal_closes_won_then_asks_for_one_run(tiny_world):
    w = tiny_world
    day3 = w.days()[-1]
    _, (deal,) = open_deals_of_one_company(w, 1)
    clock = [at(day3, 20, 0)]
    sensor = sensor_for(clock)

    requests, skip, cursor = tick(sensor, None)          # the day's changes so far: nothing closed won
    assert requests == [] and skip.startswith("no deal closed won") and cursor

    close_won(w, deal, at(day3, 20, 3), "900.00")
    clock[0] = at(day3, 20, 5)
    requests, skip, cursor2 = tick(sensor, cursor)
    assert len(requests) == 1 and skip is None
    [req] = requests
    cfg = req.run_config["ops"]["intraday_crm_ingest"]["config"]
    assert cfg["deal_ids"] == [deal] and cfg["business_date"] == day3.isoformat()
    assert req.tags["trueup/trigger"] == "intraday_sensor" and req.tags["trueup/business_date"] == day3.isoformat()
    assert json.loads(cursor2)["newest_ms"] == int(at(day3, 20, 3).timestamp() * 1000)   # the cursor moved on

    clock[0] = at(day3, 20, 7)        # the next look: the same deal, unchanged, is not asked for again
    requests, skip, cursor3 = tick(sensor, cursor2)
    assert requests == [] and skip.startswith("no deal closed won")
    assert json.loads(cursor3)["newest_ms"] == json.loads(cursor2)["newest_ms"]

    close_won(w, deal, at(day3, 20, 8), "950.00")        # the rep corrects the amount: a new version to publish
    clock[0] = at(day3, 20, 9)
    requests, _, _ = tick(sensor, cursor3)
    assert [r.run_config["ops"]["intraday_crm_ingest"]["config"]["deal_ids"] for r in requests] == [[deal]]
    assert requests[0].run_key != req.run_key


def test_the_sensor_is_stopped_by_default_and_running_in_production(monkeypatch):
    from trueup.orchestration.definitions import build_definitions

    monkeypatch.delenv("TRUEUP_INTRADAY", raising=False)
    monkeypatch.delenv("TRUEUP_INTRADAY_INTERVAL_SECONDS", raising=False)
    sensor = build_definitions().resolve_sensor_def("intraday_closed_won_sensor")
    assert sensor.default_status == DefaultSensorStatus.STOPPED
    assert sensor.minimum_interval_seconds == 120

    monkeypatch.setenv("TRUEUP_INTRADAY", "on")
    monkeypatch.setenv("TRUEUP_INTRADAY_INTERVAL_SECONDS", "300")
    sensor = build_definitions().resolve_sensor_def("intraday_closed_won_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == 300
    assert load_settings().intraday

    monkeypatch.setenv("TRUEUP_INTRADAY", "sometimes")
    with pytest.raises(ConfigError, match="TRUEUP_INTRADAY"):
        load_settings()
    monkeypatch.setenv("TRUEUP_INTRADAY", "on")
    monkeypatch.setenv("TRUEUP_INTRADAY_INTERVAL_SECONDS", "1")
    with pytest.raises(ConfigError, match="TRUEUP_INTRADAY_INTERVAL_SECONDS"):
        load_settings()


# ------------------------------------------------------------------------------------- the run
def test_an_intraday_run_posts_the_order_in_minutes_and_the_night_posts_nothing_twice(day_three):
    w, day3, company, (deal, big) = day_three
    close_won(w, deal, at(day3, 20, 10), "2500.00")
    close_won(w, big, at(day3, 20, 11), "300000.00")     # above the approval threshold (250,000 USD)
    clock = [at(day3, 20, 12)]
    requests, _, _ = tick(sensor_for(clock), None)
    [req] = requests
    assert req.run_config["ops"]["intraday_crm_ingest"]["config"]["deal_ids"] == sorted([deal, big])

    run = execute(req)

    orders = erp_orders(w)
    mine = orders[orders["crm_deal_id"] == deal]
    assert mine["order_number"].tolist() == [f"SO-8{deal}"] and mine["customer_number"].tolist() == [f"C8{company}"]
    assert mine["total_amount"].astype(float).tolist() == [2500.0]
    row = ledger("idempotency_key = :k", k=f"erp-order:crm-deal:{deal}")
    assert row["state"].tolist() == ["confirmed"] and row["run_id"].tolist() == [run.run_id]
    # the write belongs to the moment it was made on 09-03, not to the night (09-04 02:00)
    business_at = pd.Timestamp(row["business_at"].iloc[0]).to_pydatetime()
    assert at(day3, 20, 12).replace(tzinfo=None) <= business_at <= at(day3, 20, 17).replace(tzinfo=None)
    # the CRM learns the order number at once
    store = CrmStore(w.paths.crm_db)
    assert store.get("deals", int(deal))["properties"]["erp_order_number"] == f"SO-8{deal}"
    store.close()

    # the big deal waits for a person on the intraday path too: nothing posted
    assert big not in set(orders["crm_deal_id"].dropna())
    big_row = ledger("idempotency_key = :k", k=f"erp-order:crm-deal:{big}")
    assert big_row["state"].tolist() == ["awaiting_approval"]
    assert "above the approval threshold" in big_row["hold_reason"].iloc[0]

    # the night of the same day: the same gates and plan find the order there, post nothing twice
    night = run_job(load_settings(), "nightly_sync", day3)
    assert night.success, night.error
    after = erp_orders(w)
    per_deal = after.dropna(subset=["crm_deal_id"]).groupby("crm_deal_id").size()
    assert per_deal.max() == 1 and per_deal[deal] == 1
    assert big not in set(after["crm_deal_id"].dropna())
    rows = ledger("idempotency_key = :k", k=f"erp-order:crm-deal:{deal}")
    assert rows["state"].tolist() == ["confirmed"] and rows["run_id"].tolist() == [run.run_id]
    assert ledger("idempotency_key = :k", k=f"erp-order:crm-deal:{big}")["state"].tolist() == ["awaiting_approval"]


def test_a_deal_whose_erp_customer_does_not_exist_yet_waits_for_the_night(day_three):
    """The intraday path creates no ERP customer: the night's golden customer, rebuilt from the
    day's CRM and ERP, decides whether the company is new. The deal is posted that night, once."""
    w, day3, _, _ = day_three
    won = set(erp_orders(w)["crm_deal_id"].dropna())
    engine = make_erp_engine(w.paths.erp_url)
    with engine.connect() as conn:
        known = {r[0] for r in conn.execute(sa.text("SELECT crm_company_id FROM customers")) if r[0]}
    engine.dispose()
    store = CrmStore(w.paths.crm_db)
    deals = store.all_records("deals", archived=False)
    store.close()
    bad = {str(d["business_key"]) for d in read_defects(w.paths)}
    deals = deals[deals["company_id"].notna() & ~deals["id"].astype(str).isin(bad | won)
                  & ~deals["dealstage"].isin(["closedwon", "closedlost"])]
    deals = deals[~deals["company_id"].astype("Int64").astype(str).isin(known | bad)]
    deal = str(deals["id"].iloc[0])
    close_won(w, deal, at(day3, 20, 20), "700.00")

    requests, _, _ = tick(sensor_for([at(day3, 20, 25)]), None)
    [req] = requests
    run = execute(req)
    assert deal not in set(erp_orders(w)["crm_deal_id"].dropna())
    assert ledger("business_key = :d AND target_object = 'sales_orders'", d=deal).empty   # nothing recorded
    step = [e for e in run.all_events if e.is_successful_output and e.step_key == "intraday_publish_deals"]
    assert step and run.output_for_node("intraday_publish_deals")["left_for_nightly"] == [deal]

    night = run_job(load_settings(), "nightly_sync", day3)
    assert night.success, night.error
    orders = erp_orders(w)
    assert (orders["crm_deal_id"] == deal).sum() == 1


# ------------------------------------------------------------------------------ the run queue
def test_an_intraday_run_waits_in_the_queue_while_a_night_is_in_progress(tmp_path, monkeypatch):
    """Dagster's own queue pass over Trueup's local instance (tests/integration/test_run_queue_days.py does the
    same for the other jobs): the intraday run's steps belong to the pool business_day_writes."""
    from dagster import DagsterRunStatus

    from trueup.orchestration.definitions import build_definitions
    from trueup.orchestration.intraday import run_config
    from tests.run_queue import ORCH, Queue

    import yaml

    for k in ("TRUEUP_CRM_BASE_URL", "TRUEUP_WAREHOUSE_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TRUEUP_START_DATE", "2026-09-01")
    cfg = yaml.safe_load((ORCH / "dagster_local.yaml").read_text())
    cfg["run_launcher"] = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    home = tmp_path / "dagster"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    (home / "dagster.yaml").write_text(yaml.safe_dump(cfg))
    with DagsterInstance.from_config(str(home)) as instance:
        queue = Queue(instance, build_definitions())
        try:
            night = queue.submit("nightly_sync", {"dagster/partition": "2026-09-03"})
            queue.pass_()
            intraday = queue.submit("intraday_publish", {"trueup/business_date": "2026-09-04",
                                                         "trueup/trigger": "intraday_sensor"},
                                    run_config=run_config(["123"], "2026-09-04"))
            queue.pass_()
            assert queue.started(night) and queue.status(intraday) == DagsterRunStatus.QUEUED
            queue.finish(night)
            queue.pass_()
            assert queue.started(intraday)
        finally:
            queue.close()


# ----------------------------------------------------------------------------- the benchmark
def test_the_intraday_benchmark_at_smoke_size_posts_every_deal_once_and_cleans_up(tmp_path, capsys):
    """`python -m bench intraday --smoke`: every deal closed gets its order through the sensor and
    a run, once; the report has its figures; nothing is left behind. No timings asserted."""
    import os
    from pathlib import Path

    from bench.intraday import main

    assert main(["--smoke", "--out", str(tmp_path), "--quiet"]) == 0
    assert "checks: PASS" in capsys.readouterr().out
    [path] = list(tmp_path.glob("intraday-*.json"))
    result = json.loads(path.read_text())
    m = result["measured"]
    assert m["deals_closed"] == result["deals"] == m["deals_confirmed"] == m["checks"]["deals_with_one_order"]
    assert m["checks"]["failed"] == [] and m["errors"] == []
    assert m["latency_s"]["p50"] is not None and m["latency_s"]["p95"] >= m["latency_s"]["p50"] > 0
    assert all(r["success"] for r in m["runs"]) and m["ticks_requesting"] >= 1
    assert m["crm_searches"] >= m["ticks"] and m["crm_requests_non_search"] > 0   # Trueup's requests, counted
    assert not Path(result["trueup_home"]).exists()
    with pytest.raises(ProcessLookupError):
        os.kill(result["server_pid"], 0)
