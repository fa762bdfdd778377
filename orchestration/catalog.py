"""The catalog's policy, applied to every asset of the code location in one place: who owns it
and which warehouse table holds it. (What an asset is made with — its kinds — is said where it is
built.)

- Owners: the platform team owns what the platform writes; the systems of record are owned by
  the teams that run them; the ROI marts are shared with the finance team that reads them. The
  team names are this deployment's: edit OWNERS.
- Table names (`dagster/table_name`): `schema.table`, the name an analyst's query uses, the same
  on DuckDB and PostgreSQL — not dbt's parse-time database (`parse_only…`), nor a host path.
  Assets that are no warehouse table (the writes to the ERP and the CRM) get none.
"""
from __future__ import annotations

from typing import Iterable

from dagster import AssetsDefinition, AssetSpec, map_asset_specs

PLATFORM = "team:data-platform"
#: owners by asset group; a group not listed is the platform's
OWNERS = {
    "sources": {"crm": ["team:sales-ops"], "erp": ["team:finance-systems"]},
    "roi": [PLATFORM, "team:finance"],
}
#: where the recon assets' findings live: one table, one row per finding (recon_name says which)
RECON_TABLE = "recon.breaks"
NO_TABLE = {"publish", "sources", "analyst"}   # writes to other systems; the analysts' file


def owners_of(spec: AssetSpec) -> list[str]:
    owners = OWNERS.get(spec.group_name or "", [PLATFORM])
    if isinstance(owners, dict):   # sources: by the system the record set lives in
        owners = owners["crm" if spec.key.path[-1].startswith("crm_") else "erp"]
    return list(owners)


def table_of(spec: AssetSpec) -> str | None:
    if spec.group_name in NO_TABLE:
        return None
    dbt_relation = spec.metadata.get("dagster/table_name")
    if dbt_relation is not None:   # database.schema.table as dbt parsed it: keep schema.table
        return ".".join(str(dbt_relation).split(".")[-2:])
    if spec.group_name == "reconcile":
        return RECON_TABLE
    return ".".join(spec.key.path[-2:])


def with_catalog(assets: Iterable[AssetsDefinition | AssetSpec]) -> list[AssetsDefinition | AssetSpec]:
    def apply(spec: AssetSpec) -> AssetSpec:
        table = table_of(spec)
        metadata = {**spec.metadata, **({"dagster/table_name": table} if table else {})}
        return spec.replace_attributes(owners=owners_of(spec), metadata=metadata)

    return map_asset_specs(apply, list(assets))
