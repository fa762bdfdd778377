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
