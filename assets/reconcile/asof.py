"""The warehouse's state as of a business date, for the reconciliations.

raw keeps every observed version with the business day it belongs to (`_partition`: the day of
its modification, or for the platform's own ERP writes the night that made them). The state as
of day D is, per record, its latest version of a day on or before D, tombstoned records left
out; validated as of D is that version where it passed its gate. Reconciling day D therefore
reads the same rows whenever it runs — first time, re-run, or after later days were loaded —
and finds the same breaks.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa

from trueup.assets.ingest.objects import ALL_OBJECTS
from trueup.assets.ingest.raw_store import alive_sql, latest_version_sql
from trueup.connectors.warehouse import column_names, ident


def state_as_of(conn, layer: str, obj_name: str, as_of: dt.date,
                columns: Callable[[str, str], list[str]] | None = None) -> str:
    """Create the temp table `<layer>_asof_<obj>` and return its name. An object never landed
    gives an empty table with the declared columns. `columns(schema, table)` looks a table's
    columns up (default: the catalog, each time)."""
    columns = columns or (lambda schema, table: column_names(conn, schema, table))
    obj = ALL_OBJECTS[obj_name]
    name = f"{layer}_asof_{ident(obj_name)}"
    day = as_of.isoformat()
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {name}"))
    raw_cols = columns("raw", obj.raw_table)
    v_cols = columns("validated", obj.raw_table) if layer == "validated" else []
    if not raw_cols or (layer == "validated" and not v_cols):
        cols = ", ".join(f"CAST(NULL AS TEXT) AS {ident(c)}" for c in obj.columns)
        conn.execute(sa.text(f"CREATE TEMP TABLE {name} AS SELECT {cols} WHERE 1 = 0"))
        return name
    latest = (f"SELECT {', '.join(ident(c) for c in raw_cols)} FROM ({latest_version_sql(obj, '_partition <= :d')})"
              f" r WHERE _rn = 1 AND {alive_sql(obj)}")
    if layer == "raw":
        conn.execute(sa.text(f"CREATE TEMP TABLE {name} AS SELECT *{_absent(obj, raw_cols)} FROM ({latest}) x"),
                     {"d": day})
        return name
    k = ident(obj.key)
    conn.execute(sa.text(
        f"CREATE TEMP TABLE {name} AS SELECT {', '.join(ident(c) for c in v_cols)}{_absent(obj, v_cols)} FROM ("
        f" SELECT v.*, row_number() OVER (PARTITION BY v.{k} ORDER BY v._validated_at DESC) AS _vn"
        f" FROM validated.{ident(obj.raw_table)} v JOIN ({latest}) r ON v.{k} = r.{k} AND v.updated_at = r.updated_at"
        f" WHERE v._partition <= :d) x WHERE _vn = 1"), {"d": day})
    return name


def _absent(obj, have: list[str]) -> str:
    """The declared columns a table never had (an old or hand-made table), as NULLs: the rules can
    name every declared column."""
    return "".join(f", CAST(NULL AS TEXT) AS {ident(c)}" for c in obj.columns if c not in have)
