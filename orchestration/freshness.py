"""Freshness policy for the source (raw/*) assets, applied in one place.

Every raw asset is loaded by the nightly run (02:00, previous business day) or, for ERP
file exports, by the export sensor when the nightly export lands. So the newest
materialisation of each should never be more than a day old: warn after 25 h (the night's
run is late), fail after 26 h (a night was missed). The windows are per source system so
one can be loosened without touching the others; the assets themselves stay unaware.

Uses Dagster's current `FreshnessPolicy.time_window` (the UI shows each asset's freshness
state: PASS / WARN / FAIL), set on the asset specs with `map_asset_specs`.
"""
from __future__ import annotations

import datetime as dt

from dagster import AssetSpec, FreshnessPolicy, map_asset_specs

#: (warn, fail) windows by source system (assets.ingest.objects.SourceObject.system)
WINDOWS_H = {"crm": (25, 26), "erp_db": (25, 26), "erp_export": (25, 26)}
DEFAULT_WINDOW_H = (25, 26)


def _system_of(name: str) -> str | None:
    from trueup.assets.ingest.objects import CRM_OBJECTS, ERP_DB_OBJECTS, ERP_EXPORT_OBJECTS

    for objs in (CRM_OBJECTS, ERP_DB_OBJECTS, ERP_EXPORT_OBJECTS):
        for obj in objs.values():
            if obj.name == name:
                return obj.system
    return None


def policy_for(name: str) -> FreshnessPolicy:
    warn_h, fail_h = WINDOWS_H.get(_system_of(name) or "", DEFAULT_WINDOW_H)
    return FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=fail_h), warn_window=dt.timedelta(hours=warn_h))


def is_raw(spec: AssetSpec) -> bool:
    return len(spec.key.path) == 2 and spec.key.path[0] == "raw"


def with_freshness(defs: list) -> list:
    """The same assets/specs, each raw/* one carrying its freshness policy."""
    def apply(spec: AssetSpec) -> AssetSpec:
        if not is_raw(spec):
            return spec
        return spec.replace_attributes(freshness_policy=policy_for(spec.key.path[1]))

    return list(map_asset_specs(apply, defs))
