"""How a platform table, view and group of tables is described, and the DDL each gives."""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from trueup.connectors.warehouse import ident

_ENTRY = re.compile(r"^([a-z_][a-z0-9_]*)\s+(.+?)(\s+PRIMARY KEY)?$")


@dataclass(frozen=True)
class Column:
    name: str
    type: str                       # as written in DDL: TEXT, BIGINT, DECIMAL(18,2), …
    primary_key: bool = False

    def sql(self) -> str:
        return f"{ident(self.name)} {self.type}" + (" PRIMARY KEY" if self.primary_key else "")


def columns(spec: str) -> tuple[Column, ...]:
    """Columns from DDL text, `name TYPE [PRIMARY KEY], …` (commas inside a type's brackets stay)."""
    entries = [e.strip() for e in re.split(r",(?![^(]*\))", spec) if e.strip()]
    out = []
    for entry in entries:
        m = _ENTRY.match(" ".join(entry.split()))
        if not m:
            raise ValueError(f"not a column: {entry!r}")
        out.append(Column(m.group(1), m.group(2), primary_key=bool(m.group(3))))
    return tuple(out)


@dataclass(frozen=True)
class Table:
    """A table in its current layout. A table made by an older release lacks some of these
    columns: they are added (at the end, in this order) when the table's group is ensured;
    `backfill` then gives the rows written before them their value."""

    schema: str
    name: str
    columns: tuple[Column, ...]
    backfill: tuple[str, ...] = ()
    #: table constraints over several columns (e.g. a composite primary key), as DDL
    constraints: tuple[str, ...] = ()

    @property
    def qualified(self) -> str:
        return f"{ident(self.schema)}.{ident(self.name)}"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def create_sql(self) -> str:
        parts = [c.sql() for c in self.columns] + list(self.constraints)
        return f"CREATE TABLE IF NOT EXISTS {self.qualified} ({', '.join(parts)})"

    def add_column_sql(self, column: Column) -> str:
        return f"ALTER TABLE {self.qualified} ADD COLUMN {ident(column.name)} {column.type}"


@dataclass(frozen=True)
class View:
    """A view over platform tables, made again whenever its group is ensured (so that it reads
    the columns its tables have now)."""

    schema: str
    name: str
    select: str

    @property
    def qualified(self) -> str:
        return f"{ident(self.schema)}.{ident(self.name)}"

    def create_sql(self) -> str:
        return f"CREATE VIEW {self.qualified} AS {self.select}"


@dataclass(frozen=True)
class Group:
    """Tables (and views over them) one writer needs, created and upgraded together."""

    name: str
    tables: tuple[Table, ...]
    views: tuple[View, ...] = ()
    extra_schemas: tuple[str, ...] = ()     # made with the group although none of its tables is there

    @property
    def schemas(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*(t.schema for t in self.tables), *self.extra_schemas]))

    @property
    def version(self) -> str:
        """Changes whenever the group's DDL does: what a process remembers having ensured."""
        text = "\n".join([*self.schemas, *(t.create_sql() for t in self.tables), *(s for t in self.tables
                                                                                 for s in t.backfill),
                          *(v.create_sql() for v in self.views)])
        return hashlib.sha256(text.encode()).hexdigest()[:16]
