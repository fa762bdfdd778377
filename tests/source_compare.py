"""Read the sources and the warehouse's current-state views as comparable text frames."""
from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from trueup.assets.ingest.erp_extract import _text
from trueup.assets.ingest.objects import CRM_PROPERTIES, ERP_DB_OBJECTS, ERP_EXPORT_OBJECTS
from trueup.connectors.erp_schema import make_erp_engine
from trueup.connectors.warehouse import Warehouse
from trueup.sandbox.crm.store import CrmStore

# the modification-date properties are covered by updated_at; compare business properties
CRM_COMPARE = {t: [p for p in props if p not in ("hs_lastmodifieddate", "lastmodifieddate", "createdate")]
               for t, props in CRM_PROPERTIES.items()}


def crm_source(crm_db, object_type: str) -> pd.DataFrame:
    store = CrmStore(crm_db)
    df = store.all_records(object_type, archived=False)
    store.close()
    out = pd.DataFrame({"id": df["id"].astype(str)})
    for p in CRM_COMPARE[object_type]:
        out[p] = df[p].where(df[p].notna(), None) if p in df.columns else None
    if object_type == "deals":
        out["company_id"] = df["company_id"].astype("string").where(df["company_id"].notna(), None)
    return _norm(out, "id")


def crm_warehouse(wh: Warehouse, object_type: str) -> pd.DataFrame:
    cols = ["id", *CRM_COMPARE[object_type]] + (["company_id"] if object_type == "deals" else [])
    df = wh.query_df(f"SELECT {', '.join(cols)} FROM raw.crm_{object_type}_current")
    return _norm(df, "id")


def erp_source(erp_url: str, table: str) -> pd.DataFrame:
    obj = {**{o.source_name: o for o in ERP_DB_OBJECTS.values()},
           **{o.source_name: o for o in ERP_EXPORT_OBJECTS.values()}}[table]
    engine = make_erp_engine(erp_url)
    t = sa.Table(table, sa.MetaData(), autoload_with=engine)
    with engine.connect() as conn:
        rows = [[_text(v) for v in r] for r in conn.execute(sa.select(t))]
    engine.dispose()
    return _norm(pd.DataFrame(rows, columns=[c.name for c in t.columns])[list(obj.columns)], obj.key)


def erp_warehouse(wh: Warehouse, table: str) -> pd.DataFrame:
    obj = {**{o.source_name: o for o in ERP_DB_OBJECTS.values()},
           **{o.source_name: o for o in ERP_EXPORT_OBJECTS.values()}}[table]
    df = wh.query_df(f"SELECT {', '.join(obj.columns)} FROM raw.{obj.name}_current")
    return _norm(df, obj.key)


def _norm(df: pd.DataFrame, key: str) -> pd.DataFrame:
    df = df.astype(object).where(df.notna(), None)
    df = df.map(lambda v: None if v == "" else str(v))
    return df.sort_values(key).reset_index(drop=True)
