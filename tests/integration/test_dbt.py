"""The dbt layer run by the nightly job: marts.dim_customer on a generated world, checked
against the generator's truth, with dbt tests surfaced (and passing) as asset checks."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest
from trueup.connectors.warehouse import Warehouse
from trueup.orchestration.config import load_settings
from trueup.orchestration.runner import run_job
from trueup.sandbox.crm.store import CrmStore
from trueup.sandbox.generator.config import DEFAULT_DEFECT_RATES
from trueup.sandbox.generator.world import read_defects, reexport_day

from tests.world_fixtures import SMALL_WORLD, make_world, tiny_world, world_in_env  # noqa: F401

pytestmark = pytest.mark.slow

# the small world, with more clerk-renamed customers so the name-mismatch rule is exercised
MISMATCH_WORLD = dataclasses.replace(
    SMALL_WORLD, defect_rates={**DEFAULT_DEFECT_RATES, "customer_name_mismatch": 0.35})

# a constructed ambiguity: one CRM customer company, two unlinked ERP customers whose names
# normalise to the same key in the same country
AMBIGUOUS_COMPANY = "990000001"
AMBIGUOUS_CUSTOMERS = ("C9900000011", "C9900000012")


@pytest.fixture
def world(tmp_path, monkeypatch):
    with world_in_env(monkeypatch, tmp_path / "home", cfg=MISMATCH_WORLD) as w:
        yield w


@pytest.fixture
def pg_world(tmp_path, monkeypatch, pg_url):
    # the small world: shorter ones may land no ERP customers, and an object never landed has
    # only its key columns in the warehouse yet, which no model can select from
    with world_in_env(monkeypatch, tmp_path / "home", cfg=SMALL_WORLD, warehouse_url=pg_url) as w:
        yield w


def _add_ambiguity(world) -> None:
    at = dt.datetime.combine(world.days()[3], dt.time(12), tzinfo=dt.timezone.utc)
    ms = int(at.timestamp() * 1000)
    store = CrmStore(world.paths.crm_db)
    store.load_records("companies", pd.DataFrame([{
        "id": int(AMBIGUOUS_COMPANY), "created_ms": ms, "updated_ms": ms, "archived": False,
        "name": "Zeta Quartz Q9Z9Z GmbH", "domain": "zetaquartzq9z9z.example", "country": "DE",
        "industry": "Finance", "lifecyclestage": "customer"}]))
    store.close()
    from trueup.connectors.erp_schema import customers, make_erp_engine
    engine = make_erp_engine(world.paths.erp_url)
    with engine.begin() as conn:
        conn.execute(customers.insert(), [
            {"customer_number": AMBIGUOUS_CUSTOMERS[0], "name": "ZETA QUARTZ Q9Z9Z GMBH.", "country": "DE",
             "currency": "EUR", "credit_limit": "50000.00", "created_at": at, "updated_at": at},
            {"customer_number": AMBIGUOUS_CUSTOMERS[1], "name": "Zeta-Quartz Q9Z9Z", "country": "DE",
             "currency": "EUR", "credit_limit": "50000.00", "created_at": at, "updated_at": at},
        ])
    engine.dispose()


def _run_nightly(world):
    for day in world.drift_dates():
        reexport_day(world.paths, day)
    settings = load_settings()
    outcome = run_job(settings, "nightly_sync", world.days()[0], world.days()[-1])
    assert outcome.success, outcome.error
    return Warehouse(settings.warehouse_url), outcome


def _events(run_id: str, event_type: str) -> list:
    from dagster import DagsterInstance
    with DagsterInstance.get() as instance:
        return [r for r in instance.all_logs(run_id)
                if r.dagster_event and r.dagster_event.event_type_value == event_type]


def _assert_dbt_checks_passed(run_id: str) -> None:
    from trueup.assets.transform.definitions import dbt_project
    manifest = json.loads(dbt_project().manifest_path.read_text())
    # every generic test (attached to one model) becomes an asset check; singular tests do when
    # dagster-dbt can attach them to a model
    n_generic = sum(1 for n in manifest["nodes"].values() if n["resource_type"] == "test" and n.get("attached_node"))
    evals = [e.dagster_event.event_specific_data for e in _events(run_id, "ASSET_CHECK_EVALUATION")]
    dbt_evals = [e for e in evals if e.asset_key.path[0] in ("staging", "intermediate", "marts")]
    assert len(dbt_evals) >= n_generic, (len(dbt_evals), n_generic)
    failed = [(e.asset_key.to_user_string(), e.check_name) for e in dbt_evals if not e.passed]
    assert not failed, failed
    names = {e.check_name for e in dbt_evals}
    assert "assert_dim_customer_one_row_per_source_record" in names
    assert "unique_dim_customer_customer_key" in names


def _assert_dbt_ran_after_the_gates(run_id: str) -> None:
    mats = [(e.timestamp, e.dagster_event.event_specific_data.materialization.asset_key.path[0])
            for e in _events(run_id, "ASSET_MATERIALIZATION")]
    last_gate = max(t for t, layer in mats if layer == "validated")
    first_dbt = min(t for t, layer in mats if layer in ("staging", "intermediate", "marts"))
    assert first_dbt > last_gate


def _assert_the_run_parsed_the_project_at_most_once() -> None:
    """The run's dbt invocations (two builds, the raw tables' source freshness) share one parse of
    the project: at most one `dbt parse` (none when this process parsed it already for another
    home), and no build parses again (dbt_runner.ParsedProjects)."""
    from trueup.assets.transform.invocation import dbt_target_dir
    log = (dbt_target_dir(load_settings()) / "dbt.log").read_text()
    assert log.count("Command `cli build`") == 2 and log.count("Command `cli source freshness`") == 1
    assert log.count("Command `cli parse`") <= 1
    for invocation in log.split("running dbt with arguments")[1:]:
        if "Command `cli parse`" not in invocation:
            assert "partial parsing" not in invocation.lower(), invocation[:2000]


def test_nightly_builds_the_golden_customer(world):
    _add_ambiguity(world)
    wh, outcome = _run_nightly(world)
    _assert_dbt_ran_after_the_gates(outcome.run_id)
    _assert_dbt_checks_passed(outcome.run_id)
    _assert_the_run_parsed_the_project_at_most_once()
    # TRUEUP_GX_DATA_DOCS=off (the test worlds): no GX project, no link on the gate checks
    assert not (load_settings().reports_dir / "gx").exists()
    assert all("data_docs_url" not in e.dagster_event.event_specific_data.metadata
               for e in _events(outcome.run_id, "ASSET_CHECK_EVALUATION")
               if e.dagster_event.event_specific_data.check_name == "contract")

    dim = wh.query_df("SELECT * FROM marts.dim_customer")
    assert list(dim.columns[:6]) == ["customer_key", "crm_company_id", "erp_customer_number", "name", "country",
                                     "match_method"]
    erp = wh.query_df("SELECT customer_number, crm_company_id, tax_id FROM validated.erp_customers_current")
    # customers the publish step created later in this same run reach the golden customer next night
    created = set(wh.query_df("SELECT business_key FROM ops.sor_writes WHERE target_object = 'customers' AND "
                              "state = 'confirmed' AND run_id = :r", {"r": outcome.run_id})["business_key"])
    erp = erp[~erp["crm_company_id"].isin(created) | ~erp["customer_number"].str.startswith("C8")]
    crm = wh.query_df("SELECT id, lifecyclestage, archived, erp_customer_number, tax_id "
                      "FROM validated.crm_companies_current")
    # every ERP customer and every (live) CRM customer company: exactly once
    assert sorted(dim.erp_customer_number.dropna()) == sorted(erp.customer_number)
    customers = set(crm.loc[(crm.lifecyclestage == "customer") & (crm.archived != "true"), "id"])
    crm_counts = dim.crm_company_id.dropna().value_counts()
    assert customers <= set(crm_counts.index) and (crm_counts == 1).all()
    assert dim.customer_key.is_unique

    # matches against the generator's truth: clerk customer C1<id> belongs to company <id>
    matched = dim[dim.crm_company_id.notna() & dim.erp_customer_number.notna()]
    clerk = matched[matched.erp_customer_number.str.startswith("C1")]
    assert (clerk.erp_customer_number == "C1" + clerk.crm_company_id).all(), clerk
    by_number = dim.set_index("erp_customer_number")
    crm_link = dict(zip(crm.erp_customer_number.dropna(), crm.id))
    erp_links = erp.set_index("customer_number")
    method = {}
    for row in erp.itertuples():
        m = by_number.loc[row.customer_number, "match_method"]
        method[row.customer_number] = m
        if pd.notna(row.crm_company_id) or row.customer_number in crm_link:
            assert m == "link", (row.customer_number, m)
    # clerks' customers without a link are mostly found through their orders (deal ids)
    assert {"link", "tax_id", "deal_order"} <= set(matched.match_method), matched.match_method.value_counts()
    orders = wh.query_df("SELECT o.customer_number, d.company_id FROM validated.erp_sales_orders_current o "
                         "JOIN validated.crm_deals_current d ON d.id = o.crm_deal_id")
    for row in matched[matched.match_method == "deal_order"].itertuples():
        # (an order linked to one of the company's deals, or its one exact unlinked match)
        mine = orders[orders.customer_number == row.erp_customer_number]
        assert mine.empty or set(mine.company_id) == {row.crm_company_id}, row

    # a clerk's renamed customer ('Old Name …') is matched by link, tax id or its orders, never by name
    renamed = {d["details"]["customer_number"] for d in read_defects(world.paths)
               if d["kind"] == "customer_name_mismatch"}
    renamed &= set(erp.customer_number)
    assert renamed, "the world has no renamed customers to check"
    for number in renamed:
        assert method[number] in ("link", "tax_id", "deal_order", "erp_only"), (number, method[number])
        linked = pd.notna(erp_links.loc[number, "crm_company_id"]) or number in crm_link
        has_tax = pd.notna(erp_links.loc[number, "tax_id"])
        if not linked and not has_tax and method[number] != "deal_order":
            assert method[number] == "erp_only"
            company = number.removeprefix("C1")
            if company in customers:
                assert dim.set_index("crm_company_id").loc[company, "match_method"] == "crm_only"

    # the constructed ambiguity is not auto-linked: three one-sided 'ambiguous' rows
    amb = dim[(dim.crm_company_id == AMBIGUOUS_COMPANY) | dim.erp_customer_number.isin(AMBIGUOUS_CUSTOMERS)]
    assert len(amb) == 3 and set(amb.match_method) == {"ambiguous"}
    assert amb[["crm_company_id", "erp_customer_number"]].notna().sum(axis=1).tolist() == [1, 1, 1]

    # typed staging
    types = wh.query_df("SELECT column_name, data_type FROM information_schema.columns "
                        "WHERE table_schema = 'staging' AND table_name = 'stg_crm_deals'")
    t = dict(zip(types.column_name, types.data_type.str.upper()))
    assert t["amount"].startswith(("DECIMAL", "NUMERIC")) and t["closed_at"].startswith("TIMESTAMP")
    _assert_the_catalog_names_real_tables(wh)
    wh.dispose()


def _assert_the_catalog_names_real_tables(wh) -> None:
    """Every table the Dagster catalog names (`dagster/table_name`) is a table or view of this
    warehouse after a night."""
    from trueup.orchestration.definitions import defs

    graph = defs.resolve_asset_graph()
    named = {graph.get(k).metadata.get("dagster/table_name") for k in graph.get_all_asset_keys()} - {None}
    present = wh.query_df("SELECT table_schema, table_name FROM information_schema.tables")
    present = set(present.table_schema + "." + present.table_name)
    assert named and named <= present, sorted(named - present)


def test_dbt_builds_on_postgresql(pg_world, monkeypatch):
    monkeypatch.setenv("TRUEUP_GX_DATA_DOCS", "on")   # the docs below include GX's index of the night's gates
    wh, outcome = _run_nightly(pg_world)
    assert wh.dialect == "postgresql"
    _assert_dbt_checks_passed(outcome.run_id)
    fresh = [e.dagster_event.event_specific_data for e in _events(outcome.run_id, "ASSET_CHECK_EVALUATION")
             if e.dagster_event.event_specific_data.check_name == "dbt_source_freshness"]
    assert len(fresh) == 7 and all(e.passed for e in fresh), fresh   # the raw tables' freshness, on PostgreSQL
    dim = wh.query_df("SELECT match_method, crm_company_id, erp_customer_number FROM marts.dim_customer")
    erp = wh.query_df("SELECT customer_number FROM validated.erp_customers_current")
    created = set(wh.query_df("SELECT payload FROM ops.sor_writes WHERE target_object = 'customers' AND "
                              "state = 'confirmed' AND run_id = :r", {"r": outcome.run_id})["payload"]
                  .map(lambda p: json.loads(p)["customer_number"]))
    # customers the publish step created later in this same run reach the golden customer next night
    assert sorted(dim.erp_customer_number.dropna()) == sorted(set(erp.customer_number) - created)
    inv = wh.query_df("SELECT amount, issue_date, created_at FROM staging.stg_erp_invoices LIMIT 1")
    assert len(inv) == 1 and isinstance(inv.issue_date[0], dt.date)
    all_columns = list(wh.query_df("SELECT * FROM marts.dim_customer LIMIT 0").columns)
    wh.dispose()
    _assert_docs_describe_the_live_warehouse(all_columns)


def _assert_docs_describe_the_live_warehouse(dim_columns: list[str]) -> None:
    """`trueup docs --no-serve` builds dbt's site with no dbt variable set by hand; its catalog
    is read from this warehouse (the golden customer's real columns)."""
    from trueup.orchestration.cli import main
    from trueup.orchestration.cli_docs import docs_dir

    assert main(["docs", "--no-serve"]) == 0
    from trueup.quality.data_docs import SITE_PATH   # GX's index of the night's gate results, rebuilt
    gx_index = (load_settings().reports_dir / SITE_PATH / "index.html").read_text()
    assert "crm_deals.inbound" in gx_index and "erp_payments.inbound" in gx_index
    site = docs_dir(load_settings())
    assert (site / "index.html").stat().st_size > 10_000
    catalog = json.loads((site / "catalog.json").read_text())
    dim = next(n for n in catalog["nodes"].values() if n["metadata"]["name"] == "dim_customer")
    assert [c.lower() for c in dim["columns"]] == [c.lower() for c in dim_columns]


def test_definitions_fail_clearly_without_a_manifest(monkeypatch, tmp_path):
    import trueup.assets.transform.definitions as transform
    project = tmp_path / "dbt_project"
    project.mkdir()
    for name in ("dbt_project.yml", "profiles.yml"):
        (project / name).write_text((transform.PROJECT_DIR / name).read_text())
    monkeypatch.setattr(transform, "PROJECT_DIR", project)
    with pytest.raises(transform.ManifestMissing, match=r"^dbt manifest not found at .*make setup"):
        transform.build_transform_assets()


def test_profile_follows_the_warehouse_url(tmp_path):
    """dbt gets every connection value in a private profile written for the invocation and
    removed after it; os.environ is left alone."""
    import os
    import stat

    import yaml
    from trueup.assets.transform.invocation import dbt_invocation
    from trueup.assets.transform.profile import dbt_profile
    assert dbt_profile("duckdb:////data/wh.duckdb")["trueup"]["outputs"]["duckdb"]["path"] == "/data/wh.duckdb"
    pg = dbt_profile("postgresql://ana:p%40ss@db.local:6543/trueup")["trueup"]
    out = pg["outputs"][pg["target"]]
    assert (pg["target"], out["host"], out["port"], out["user"], out["password"], out["dbname"]) == (
        "postgres", "db.local", 6543, "ana", "p@ss", "trueup")
    settings = dataclasses.replace(load_settings(), home=tmp_path, warehouse_url="postgresql://ana:p%40ss@db.local/trueup")
    environ = dict(os.environ)
    with dbt_invocation(settings) as invocation:
        profile = invocation.profiles_dir / "profiles.yml"
        assert yaml.safe_load(profile.read_text())["trueup"]["outputs"]["postgres"]["port"] == 5432
        assert stat.S_IMODE(profile.stat().st_mode) == 0o600
        assert stat.S_IMODE(invocation.profiles_dir.stat().st_mode) == 0o700
        assert dict(os.environ) == environ
    assert not invocation.profiles_dir.exists()


def test_dbt_builds_in_the_steps_process_and_prints_nothing(tiny_world, capfd):
    """dbt runs through its programmatic runner inside the run's process (no `dbt` subprocess:
    importing dbt once per run, not once per build) and writes nothing on the console — its
    log is the home's dbt.log, named by the step's one log line."""
    import subprocess

    from trueup.assets.transform.invocation import dbt_target_dir

    started = []
    real_popen = subprocess.Popen.__init__

    def watch(self, args, *a, **k):
        started.append(args)
        return real_popen(self, args, *a, **k)

    subprocess.Popen.__init__ = watch
    try:
        outcome = run_job(load_settings(), "nightly_sync", tiny_world.days()[0], tiny_world.days()[-1])
    finally:
        subprocess.Popen.__init__ = real_popen
    assert outcome.success, outcome.error
    assert not [a for a in started if Path(str(a[0] if isinstance(a, (list, tuple)) else a)).name == "dbt"
                or "dbt.cli" in str(a)], started
    out, _ = capfd.readouterr()
    assert "of 44 START" not in out and "Completed successfully" not in out and "\x1b[" not in out
    lines = [r.message for r in _events(outcome.run_id, "ASSET_MATERIALIZATION")]
    assert lines
    from dagster import DagsterInstance
    with DagsterInstance.get() as instance:
        said = [e.user_message for e in instance.all_logs(outcome.run_id) if e.user_message.startswith("dbt build:")]
    assert len(said) == 2 and all(str(dbt_target_dir(load_settings()) / "dbt.log") in s for s in said), said
    # the run's two builds share one parse of the project (none when this process parsed it already)
    log = (dbt_target_dir(load_settings()) / "dbt.log").read_text()
    assert log.count("Command `cli parse`") <= 1 and log.count("Command `cli build`") >= 2


def test_dbt_sources_name_their_dagster_assets():
    """Every dbt source table names its asset in the YAML, and every asset a source says writes
    its tables is an asset of the code location."""
    from trueup.assets.transform.definitions import dbt_project
    from trueup.assets.transform.translator import written_by
    from trueup.orchestration.definitions import defs
    manifest = json.loads(dbt_project().manifest_path.read_text())
    sources = manifest["sources"].values()
    assert [s["unique_id"] for s in sources if not s["meta"].get("dagster", {}).get("asset_key")] == []
    writers = set().union(*(written_by(s) for s in sources))
    graph = defs.resolve_asset_graph()
    assert writers and all(graph.has(key) and graph.get(key).is_materializable for key in writers), writers


def test_a_parse_made_for_one_world_builds_into_another(tmp_path, monkeypatch):
    """The process's parse of the project is reused across homes (dbt_runner.ParsedProjects drops
    the DuckDB file's folder from its key): what it builds must land in the warehouse of the
    invocation's profile, never in the home the parse was made for."""
    import types

    import duckdb
    from trueup.assets.transform.dbt_runner import ParsedProjects, _invoke
    from trueup.assets.transform.invocation import PROJECT_DIR, dbt_invocation
    from trueup.assets.transform.profile import dbt_vars_args

    def home(name: str):
        (tmp_path / name).mkdir()
        return types.SimpleNamespace(home=tmp_path / name,
                                     warehouse_url=f"duckdb:///{tmp_path / name / 'warehouse.duckdb'}",
                                     publish_from=dt.date(2026, 10, 1), reporting_currency="USD")

    first, second = home("first"), home("second")
    vars_ = dbt_vars_args(first)
    assert ParsedProjects.key(PROJECT_DIR, first.warehouse_url, vars_) == \
        ParsedProjects.key(PROJECT_DIR, second.warehouse_url, vars_)
    quiet = ["--log-level", "none", "--no-write-json", "--no-send-anonymous-usage-stats"]

    def where(settings, profiles_dir):
        return ["--project-dir", str(PROJECT_DIR), "--profiles-dir", str(profiles_dir),
                "--target-path", str(settings.home / "target")]

    with dbt_invocation(first) as inv:
        parsed = _invoke([*quiet, "parse", *vars_, *where(first, inv.profiles_dir)], None)
    assert parsed.success and parsed.result is not None
    with dbt_invocation(second) as inv:
        seeded = _invoke([*quiet, "seed", *vars_, *where(second, inv.profiles_dir)], None, parsed.result)
    assert seeded.success, seeded.exception
    with duckdb.connect(str(tmp_path / "second" / "warehouse.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM reference.fx_rates").fetchone()[0] > 0
    assert not (tmp_path / "first" / "warehouse.duckdb").exists()

    # a world with another go-live and currency shares the parse too (the project's vars sit in SQL
    # bodies): its SQL is rendered with its own vars
    third = home("third")
    third.publish_from, third.reporting_currency = dt.date(2027, 2, 1), "EUR"
    assert ParsedProjects.key(PROJECT_DIR, third.warehouse_url, dbt_vars_args(third)) == \
        ParsedProjects.key(PROJECT_DIR, first.warehouse_url, vars_)
    with dbt_invocation(third) as inv:
        compiled = _invoke([*quiet, "compile", *dbt_vars_args(third), *where(third, inv.profiles_dir),
                            "--select", "roi_summary"], None, parsed.result)
    assert compiled.success, compiled.exception
    sql = compiled.result.results[0].node.compiled_code
    assert "'EUR'" in sql and "2027-02-01" in sql and "'USD'" not in sql and "2026-10-01" not in sql
    # and TRUEUP_PUBLISH_FROM, which wins over the var, is read when the SQL is rendered
    monkeypatch.setenv("TRUEUP_PUBLISH_FROM", "2027-03-01")
    assert ParsedProjects.key(PROJECT_DIR, third.warehouse_url, dbt_vars_args(third)) == \
        ParsedProjects.key(PROJECT_DIR, first.warehouse_url, vars_)
    with dbt_invocation(third) as inv:
        compiled = _invoke([*quiet, "compile", *dbt_vars_args(third), *where(third, inv.profiles_dir),
                            "--select", "roi_summary"], None, parsed.result)
    assert compiled.success and "2027-03-01" in compiled.result.results[0].node.compiled_code


def test_the_night_reports_source_freshness_and_each_gate_links_its_gx_data_docs(tiny_world, monkeypatch):
    """Each gate check links to GX's Data Docs page of that day's result, kept in the home's GX
    context (here from a sync, which runs no dbt: no freshness check there). `dbt source
    freshness` of the raw tables runs in the nightly job as one check per raw asset: fresh after
    the night; when the loads are made older by hand, WARN past 25 h and ERROR past 26 h — a
    load that found nothing new counts as a load."""
    from dagster import AssetCheckSeverity, AssetSelection, Definitions, define_asset_job

    from trueup.orchestration.definitions import build_definitions
    from trueup.quality.data_docs import render_page

    monkeypatch.setenv("TRUEUP_GX_DATA_DOCS", "on")   # the test worlds switch them off
    day = tiny_world.days()[-1]
    synced = run_job(load_settings(), "sync_and_gate", day)
    assert synced.success, synced.error
    reports = load_settings().reports_dir
    checks = [e.dagster_event.event_specific_data for e in _events(synced.run_id, "ASSET_CHECK_EVALUATION")]
    gates = [c for c in checks if c.check_name == "contract"]
    assert len(gates) == 7 and len(checks) == 7   # the contracts' checks, and no dbt freshness
    for gate in gates:
        url = gate.metadata["data_docs_url"].value
        page = reports / url.split("/quality/", 1)[1]
        assert url.startswith("http://127.0.0.1:8080/quality/gx/") and page.name == f"{day.isoformat()}.html"
        assert not page.exists()   # rendered when `trueup docs` is first asked for it
        assert render_page(reports, page.relative_to(reports))
        assert synced.run_id in url and "Great Expectations" in page.read_text()

    outcome = run_job(load_settings(), "nightly_sync", day)
    assert outcome.success, outcome.error
    evaluations = {e.dagster_event.event_specific_data.asset_key.path[-1]: e.dagster_event.event_specific_data
                   for e in _events(outcome.run_id, "ASSET_CHECK_EVALUATION")
                   if e.dagster_event.event_specific_data.check_name == "dbt_source_freshness"}
    assert sorted(evaluations) == sorted(["crm_companies", "crm_contacts", "crm_deals", "erp_customers",
                                          "erp_sales_orders", "erp_invoices", "erp_payments"])
    assert all(e.passed for e in evaluations.values()), evaluations
    assert all(e.metadata["age_hours"].value < 1 for e in evaluations.values())

    # the CRM deals last loaded 25.5 h ago (a version and the step that found nothing newer),
    # the ERP's exports 30 h ago
    wh = Warehouse(load_settings().warehouse_url)
    with wh.begin() as conn:
        import sqlalchemy as sa
        conn.execute(sa.text("UPDATE raw.crm_deals SET _loaded_at = _loaded_at - INTERVAL 1530 MINUTE"))
        conn.execute(sa.text("UPDATE ops.sync_runs SET finished_at = finished_at - INTERVAL 1530 MINUTE "
                             "WHERE asset = 'raw/crm_deals'"))
        for table in ("erp_invoices", "erp_payments"):
            conn.execute(sa.text(f"UPDATE raw.{table} SET _loaded_at = _loaded_at - INTERVAL 30 HOUR"))
        conn.execute(sa.text("UPDATE ops.export_loads SET checked_at = checked_at - INTERVAL 30 HOUR"))
    wh.dispose()
    defs = build_definitions()
    checks_only = define_asset_job("freshness_only", selection=AssetSelection.checks_for_assets(
        *[["raw", n] for n in evaluations]))
    job = Definitions.merge(defs, Definitions(jobs=[checks_only])).resolve_job_def("freshness_only")
    from dagster import DagsterInstance
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(instance=instance, raise_on_error=False)
    later = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert {k for k, e in later.items() if e.passed} == {"crm_companies", "crm_contacts", "erp_customers",
                                                         "erp_sales_orders"}
    assert later["crm_deals"].severity == AssetCheckSeverity.WARN and "past 25 hours" in later["crm_deals"].description
    assert 25.4 < later["crm_deals"].metadata["age_hours"].value < 26
    for table in ("erp_invoices", "erp_payments"):
        assert later[table].severity == AssetCheckSeverity.ERROR and "past 26 hours" in later[table].description
