"""The Dagster catalog: every asset has owners and kinds; every warehouse asset names its table as
an analyst queries it (schema.table); the ROI marts are a group apart from the golden customer.
(That each named table exists in a live warehouse: tests/integration/test_dbt.py.)"""
from __future__ import annotations

import pytest

from trueup.orchestration.catalog import NO_TABLE


@pytest.fixture(scope="module")
def graph():
    from trueup.orchestration.definitions import defs

    return defs.resolve_asset_graph()


def _kinds(node) -> set[str]:
    return {t.removeprefix("dagster/kind/") for t in node.tags if t.startswith("dagster/kind/")}


def test_every_asset_has_owners_and_kinds(graph):
    nodes = [graph.get(k) for k in graph.get_all_asset_keys()]
    assert [n.key.to_user_string() for n in nodes if not n.owners] == []
    assert [n.key.to_user_string() for n in nodes if not _kinds(n)] == []
    sources = {n.key.path[-1]: n.owners for n in nodes if n.group_name == "sources"}
    assert sources["crm_deals"] != sources["erp_invoices"]   # each system of record has its own team
    assert _kinds(graph.get(next(k for k in graph.get_all_asset_keys() if k.path == ["raw", "erp_invoices"]))) \
        == {"python", "csv"}


def test_every_warehouse_asset_names_its_table_as_schema_dot_table(graph):
    named = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        table = node.metadata.get("dagster/table_name")
        if node.group_name in NO_TABLE:
            assert table is None, key
            continue
        assert table is not None, key
        assert table.count(".") == 1 and not table.startswith("parse_only"), (key, table)
        named[key.to_user_string()] = table
    assert named["marts/dim_customer"] == "marts.dim_customer"
    assert named["raw/crm_deals"] == "raw.crm_deals" and named["validated/erp_payments"] == "validated.erp_payments"
    assert named["recon/deals_vs_orders"] == "recon.breaks"


def test_the_roi_marts_are_a_group_apart_and_still_built_nightly(graph):
    from trueup.orchestration.definitions import defs

    groups = {k.to_user_string(): graph.get(k).group_name for k in graph.get_all_asset_keys()}
    assert groups["marts/dim_customer"] == "marts"
    roi = {k for k, g in groups.items() if g == "roi"}
    assert {"marts/roi_summary", "marts/roi_daily", "marts/roi_periods", "marts/fct_quote_to_cash"} <= roi
    nightly = {k.to_user_string() for k in defs.resolve_job_def("nightly_sync").asset_layer.selected_asset_keys}
    assert roi <= nightly


@pytest.mark.parametrize("url, kind", [("duckdb:///tmp/w.duckdb", "duckdb"),
                                       ("postgresql://u:p@127.0.0.1:5432/wh", "postgres")])
def test_the_dbt_models_show_the_warehouse_they_are_built_in(monkeypatch, tmp_path, url, kind):
    """The manifest is parsed with DuckDB at setup; the catalog names the configured warehouse."""
    from trueup.orchestration.definitions import build_definitions

    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path))
    monkeypatch.setenv("TRUEUP_WAREHOUSE_URL", url)
    graph = build_definitions().resolve_asset_graph()
    for name in ("marts/dim_customer", "marts/roi_summary", "staging/stg_crm_deals"):
        node = graph.get(next(k for k in graph.get_all_asset_keys() if k.to_user_string() == name))
        assert _kinds(node) & {"duckdb", "postgres"} == {kind} and "dbt" in _kinds(node), (name, _kinds(node))
