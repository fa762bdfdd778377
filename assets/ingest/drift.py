"""Schema drift at the door: new columns are carried along, missing or retyped required
columns fail the batch with a message that says exactly what changed."""
from __future__ import annotations

import re

import pandas as pd

from trueup.connectors.errors import SyncError

from .objects import SourceObject

_DECIMAL = re.compile(r"^-?\d+(\.\d+)?$")


class SchemaDriftError(SyncError):
    error_class = "permanent"


def check_columns(obj: SourceObject, df: pd.DataFrame, where: str) -> list[str]:
    """Raise on missing/retyped required columns; return the unexpected new columns."""
    missing = [c for c in obj.required if c not in df.columns]
    new = [c for c in df.columns if c not in obj.columns and not c.startswith("_")]
    if missing:
        hint = f" (found new column(s) {', '.join(new)})" if new else ""
        raise SchemaDriftError(
            f"{where}: required column(s) {', '.join(missing)} missing{hint} — batch rejected, nothing loaded",
            object_type=obj.name)
    for col in obj.numeric:
        values = df[col].dropna().astype(str).str.strip()
        values = values[values != ""]
        # a column where no value is a plain decimal has changed type, it is not a few bad rows
        if len(values) and not values.str.match(_DECIMAL).any():
            sample = values.iloc[0][:20]
            raise SchemaDriftError(
                f"{where}: column {col} no longer holds decimals (e.g. {sample!r}) — batch rejected, nothing loaded",
                object_type=obj.name)
    return new
