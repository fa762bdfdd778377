"""Read the current source version of specific records (for replaying quarantined rows)."""
from __future__ import annotations


import pandas as pd
import sqlalchemy as sa

from trueup.connectors.warehouse import Warehouse, ident

from .crm_extract import _business_day, _deal_companies, record_to_row
from .erp_extract import _text
from .objects import ALL_OBJECTS, CRM_PROPERTIES


def reread(obj_name: str, keys: list[str], *, tz: str, wh: Warehouse, crm=None, erp_engine=None) -> pd.DataFrame:
    """Current source rows for `keys`, as raw-shaped text with a `_partition` (their business day).

    CRM records come from the API (deleted ones come back archived), ERP table rows from the
    database, and export rows — the export being their source — from the latest landed copy."""
    obj = ALL_OBJECTS[obj_name]
    if obj.system == "crm":
        props = CRM_PROPERTIES[obj.source_name]
        live = crm.batch_read(obj.source_name, keys, props)
        found = {str(r["id"]) for r in live}
        gone = [k for k in keys if k not in found]
        archived = crm.batch_read(obj.source_name, gone, props, archived=True) if gone else []
        rows = [record_to_row(r, props) for r in [*live, *archived]]
        df = pd.DataFrame.from_records(rows, columns=list(obj.columns[:5] + props))
        if obj.source_name == "deals":
            df["company_id"] = _deal_companies(crm, df["id"].tolist())
    elif obj.system == "erp_db":
        table = sa.Table(obj.source_name, sa.MetaData(), autoload_with=erp_engine)
        with erp_engine.connect() as conn:
            result = conn.execute(sa.select(table).where(table.c[obj.key].in_(keys)))
            cols = list(result.keys())
            df = pd.DataFrame([[_text(v) for v in r] for r in result], columns=cols, dtype=object)
    else:
        with wh.begin() as conn:
            df = wh.read_df(conn, f"SELECT * FROM raw.{ident(obj.current_view)} WHERE {ident(obj.key)} IN "
                                  f"(SELECT unnest(CAST(:keys AS TEXT[])))" if wh.dialect == "duckdb" else
                            f"SELECT * FROM raw.{ident(obj.current_view)} WHERE {ident(obj.key)} = ANY(:keys)",
                            {"keys": list(keys)})
        df = df[[c for c in df.columns if not c.startswith("_")]]
    if df.empty:
        return df.assign(_partition=pd.Series(dtype=object))
    df["_partition"] = _business_day(df["updated_at"], tz)
    return df.reset_index(drop=True)


