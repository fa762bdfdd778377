"""How dbt nodes become Dagster assets. Imported only when the definitions are built.

- Sources: dagster-dbt's own rule: each source table names its asset in the YAML
  (`config.meta.dagster.asset_key`, dbt_project/models/*/_*sources.yml).
- Models and seeds: key [<folder>, <name>] and their folder as group, read from the node itself
  (no model names here); a group set in dbt (`meta.dagster.group`, dbt_project.yml) wins.
- Kinds: dagster-dbt names the adapter the manifest was parsed with (`make setup` parses with
  DuckDB); the translator names the warehouse the code location runs against instead.
- A source may list the assets that write its tables (`config.meta.trueup.written_by`, a list of
  asset keys): the models reading it depend on those assets too, so one nightly run ends with
  marts that include that night's ledger and breaks.
"""
from __future__ import annotations

from typing import Any, Mapping

from dagster import AssetKey, AssetSpec
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings


def written_by(source_props: Mapping[str, Any]) -> set[AssetKey]:
    """The asset keys a source's YAML says write its tables."""
    written = source_props.get("meta", {}).get("trueup", {}).get("written_by", [])
    return {AssetKey(path) for path in written}


#: the kinds dagster-dbt gives a node for its adapter
ADAPTER_KINDS = frozenset({"duckdb", "postgres"})


class TrueupTranslator(DagsterDbtTranslator):
    def __init__(self, settings: DagsterDbtTranslatorSettings, warehouse_kind: str = "duckdb"):
        super().__init__(settings=settings)
        self.warehouse_kind = warehouse_kind

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project) -> AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        props = self.get_resource_props(manifest, unique_id)
        if props["resource_type"] == "source":
            return spec
        folder = props["fqn"][1] if len(props["fqn"]) > 2 else "transform"
        group = (props.get("config", {}).get("meta") or {}).get("dagster", {}).get("group")
        kinds = (set(spec.kinds) - ADAPTER_KINDS) | {self.warehouse_kind}
        spec = spec.replace_attributes(key=AssetKey([folder, props["name"]]), group_name=group or folder, kinds=kinds)
        writers = set()
        for node in props.get("depends_on", {}).get("nodes", []):
            if node.startswith("source."):
                writers |= written_by(self.get_resource_props(manifest, node))
        return spec.merge_attributes(deps=sorted(writers, key=str)) if writers else spec


def trueup_translator(warehouse_kind: str = "duckdb") -> TrueupTranslator:
    """`warehouse_kind`: "duckdb" or "postgres", the warehouse the models are built in."""
    return TrueupTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True),
                            warehouse_kind=warehouse_kind)
