"""Every source (raw/*) asset declares how stale it may be."""
import datetime as dt

from dagster import AssetKey

from trueup.orchestration.definitions import build_definitions


def test_every_raw_asset_has_a_freshness_policy():
    from trueup.assets.ingest.objects import CRM_OBJECTS, ERP_DB_OBJECTS, ERP_EXPORT_OBJECTS

    graph = build_definitions().resolve_asset_graph()
    raw = [k for k in graph.get_all_asset_keys() if k.path[0] == "raw"]
    expected = {AssetKey(["raw", o.name]) for objs in (CRM_OBJECTS, ERP_DB_OBJECTS, ERP_EXPORT_OBJECTS)
                for o in objs.values()}
    assert expected <= set(raw)
    for key in raw:
        policy = graph.get(key).freshness_policy
        assert policy is not None, key
        assert policy.fail_window.to_timedelta() == dt.timedelta(hours=26), key
        assert policy.warn_window.to_timedelta() == dt.timedelta(hours=25), key
    # only the raw layer: the rest of the graph is unchanged
    assert graph.get(AssetKey(["validated", "erp_invoices"])).freshness_policy is None


def test_dbt_source_freshness_of_each_raw_table_has_the_windows_of_its_asset():
    """The raw tables' dbt source freshness (dbt_project/models/staging/_sources.yml) and the raw
    assets' Dagster freshness policy warn and fail at the same age, and every raw asset has both."""
    import json

    from trueup.assets.transform.definitions import dbt_project
    from trueup.assets.transform.source_freshness import DBT_SOURCE

    hours = {"hour": 1, "day": 24}
    manifest = json.loads(dbt_project().manifest_path.read_text())
    tables = {s["name"]: s for s in manifest["sources"].values() if s["source_name"] == DBT_SOURCE}
    graph = build_definitions().resolve_asset_graph()
    raw = [k for k in graph.get_all_asset_keys() if k.path[0] == "raw"]
    assert sorted(tables) == sorted(k.path[-1] for k in raw)
    for key in raw:
        table, policy = tables[key.path[-1]], graph.get(key).freshness_policy
        assert table["config"]["meta"]["dagster"]["asset_key"] == key.path
        assert "raw_loaded_at" in table["loaded_at_query"]
        warn, error = table["freshness"]["warn_after"], table["freshness"]["error_after"]
        assert dt.timedelta(hours=warn["count"] * hours[warn["period"]]) == policy.warn_window.to_timedelta()
        assert dt.timedelta(hours=error["count"] * hours[error["period"]]) == policy.fail_window.to_timedelta()
