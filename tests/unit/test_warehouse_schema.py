"""The platform tables of connectors/warehouse_schema agree with everything that reads them.

A fresh DuckDB warehouse gets every group; then
- the dbt sources of `ops`, `quality` and `recon` name tables (and columns) it has, the columns
  the dbt macros describe again for a missing table are its columns with their types, and the
  columns the dbt models read from those tables exist (the models are rendered with the
  project's own macros, then read with sqlglot, which dagster-dbt brings);
- every SQL statement the platform's Python holds as a literal and that names one of those
  tables binds (DuckDB's EXPLAIN: an unknown table or column is an error);
- ensuring twice in a process runs the DDL once, and a table of an older release gains the
  columns it lacks.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import duckdb
import jinja2
import pytest
import sqlalchemy as sa
import sqlglot
import yaml
from sqlglot import exp
from sqlglot.optimizer.scope import traverse_scope

from trueup.connectors.warehouse import Warehouse
from trueup.connectors.warehouse_schema import GROUPS, LEDGER, TABLES, VIEWS, ensure

ROOT = Path(__file__).resolve().parents[2]
DBT = ROOT / "dbt_project"
PLATFORM_SCHEMAS = ("ops", "quality", "recon")
PLATFORM_RELATION = re.compile(r"\b(?:ops|quality|recon)\.[a-z_]+\b")
#: what holds the platform's SQL (tests are left out: they make odd tables on purpose)
CODE = ("orchestration", "assets", "quality", "connectors", "sandbox", "bench")
#: dbt's names for the types the DDL writes, as DuckDB reports them
DBT_TYPES = {"varchar": "VARCHAR", "text": "VARCHAR", "timestamp": "TIMESTAMP", "date": "DATE",
             "boolean": "BOOLEAN", "integer": "INTEGER", "bigint": "BIGINT", "double": "DOUBLE"}


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "w.duckdb"
    wh = Warehouse(f"duckdb:///{path}")
    for group in GROUPS:
        ensure(wh, group)
    wh.dispose()
    return path


@pytest.fixture(scope="module")
def layout(warehouse) -> dict[str, dict[str, str]]:
    """relation → {column: DuckDB type}, as the fresh warehouse has them (tables and views)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    rows = con.execute("SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema IN ('ops', 'quality', 'recon') ORDER BY table_schema, table_name, "
                       "ordinal_position").fetchall()
    con.close()
    out: dict[str, dict[str, str]] = {}
    for schema, table, column, data_type in rows:
        out.setdefault(f"{schema}.{table}", {})[column] = data_type
    return out


def test_a_fresh_warehouse_has_exactly_the_defined_tables_and_views(layout):
    assert set(layout) == set(TABLES) | set(VIEWS)
    for name, table in TABLES.items():
        assert tuple(layout[name]) == table.column_names, name
    assert tuple(layout["recon.breaks_counted"]) == TABLES["recon.breaks"].column_names + ("counted_at_risk",)


# -- dbt ----------------------------------------------------------------------------------------
def _platform_sources() -> list[tuple[str, str, dict]]:
    """(schema, table, its YAML) of every dbt source table in the platform schemas."""
    found = []
    for path in sorted((DBT / "models").rglob("*.yml")):
        for source in (yaml.safe_load(path.read_text()) or {}).get("sources", []):
            schema = source.get("schema", source["name"])
            if schema in PLATFORM_SCHEMAS:
                found += [(schema, t["name"], t) for t in source.get("tables", [])]
    return found


def test_the_dbt_sources_of_the_platform_schemas_name_tables_and_columns_it_has(layout):
    sources = _platform_sources()
    assert {f"{s}.{t}" for s, t, _ in sources} >= {"ops.sync_runs", "ops.sor_writes", "recon.breaks"}
    for schema, table, spec in sources:
        relation = f"{schema}.{table}"
        assert relation in layout, f"dbt source {relation} is not a platform table or view"
        declared = [c["name"] for c in spec.get("columns", [])]
        assert set(declared) <= set(layout[relation]), (relation, set(declared) - set(layout[relation]))


def _macro_text() -> str:
    return "\n".join(p.read_text() for p in sorted((DBT / "macros").rglob("*.sql")))


def test_the_columns_dbt_describes_for_a_missing_table_are_the_tables_columns(layout):
    """`optional_source(src, tbl, {column: type})` stands in for a table not made yet: its columns
    and types are the table's."""
    calls = re.findall(r"optional_source\(\s*'(\w+)'\s*,\s*'(\w+)'\s*,\s*(\{.*?\})\s*\)", _macro_text(), re.S)
    assert len(calls) >= 3
    for schema, table, columns in calls:
        relation = f"{schema}.{table}"
        assert relation in layout, relation
        for column, dbt_type in ast.literal_eval(columns).items():
            assert column in layout[relation], f"{relation}.{column} (dbt macros) is not a column of the table"
            want = DBT_TYPES.get(dbt_type.lower(), dbt_type.upper())
            assert layout[relation][column] == want, (relation, column, layout[relation][column], dbt_type)


class _AnyMacro(jinja2.ChainableUndefined):
    """Whatever dbt provides that rendering does not need (dbt.*, var, …): renders as NULL."""

    def __call__(self, *args, **kwargs):
        return "NULL"

    def __str__(self) -> str:
        return "NULL"


class _Relation(str):
    @property
    def schema(self) -> str:
        return self.split(".")[0]

    @property
    def identifier(self) -> str:
        return self.split(".")[1]

    database = None


class _Adapter:
    """Introspection as on a warehouse where every platform table exists."""

    def __init__(self, layout):
        self.layout = layout

    def get_relation(self, database, schema, identifier):
        return _Relation(f"{schema}.{identifier}") if f"{schema}.{identifier}" in self.layout else None

    def get_columns_in_relation(self, relation):
        return [SimpleNamespace(name=c) for c in self.layout.get(str(relation), {})]


def _platform_reads(sql: str) -> list[tuple[str, set[str]]]:
    """(platform relation, columns read from it) of each query scope that reads one: all of a
    scope's columns when the relation is its only source, else those qualified with its alias."""
    out = []
    for scope in traverse_scope(sqlglot.parse_one(sql, read="duckdb")):
        tables = {alias: src for alias, (_, src) in scope.selected_sources.items() if isinstance(src, exp.Table)}
        platform = {alias: t for alias, t in tables.items() if t.db in PLATFORM_SCHEMAS}
        for alias, table in platform.items():
            alone = len(scope.selected_sources) == 1
            columns = {c.name for c in scope.columns
                       if c.table == alias or (alone and not c.table)}
            out.append((f"{table.db}.{table.name}", columns))
    return out


def test_the_dbt_models_read_only_columns_the_platform_tables_have(layout):
    env = jinja2.Environment(undefined=_AnyMacro, extensions=["jinja2.ext.do"])
    context = {"source": lambda s, t: _Relation(f"{s}.{t}"), "ref": lambda model: model, "config": lambda **_: "",
               "execute": True, "adapter": _Adapter(layout), "is_incremental": lambda: False}
    macros = _macro_text()
    read: dict[str, set[str]] = {}
    for path in sorted((DBT / "models").rglob("*.sql")):
        sql = env.from_string(macros + "\n" + path.read_text()).render(**context)
        for relation, columns in _platform_reads(sql):
            assert relation in layout, f"{path.name} reads {relation}, which is not a platform table or view"
            unknown = columns - set(layout[relation])
            assert not unknown, f"{path.name} reads {sorted(unknown)} from {relation}"
            read.setdefault(relation, set()).update(columns)
    # the walk saw the models' reads (a rendering that lost them would pass vacuously)
    assert {"started_at", "rows_written", "business_date"} <= read["ops.sync_runs"]
    assert {"batch_kind", "rows_in"} <= read["quality.gate_results"]
    assert {"business_at", "approved_by"} <= read["ops.sor_writes"]
    assert {"as_of"} <= read["recon.runs"]


# -- SQL held by the platform's Python -------------------------------------------------------------
def _literal(node: ast.AST) -> str | None:
    """A string literal, or a sum of them ("SELECT …" + "FROM …")."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left), _literal(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def _statements() -> dict[str, str]:
    """Every literal that starts like a statement and names a platform table, by where it is."""
    found = {}
    for top in CODE:
        for path in sorted((ROOT / top).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                text = _literal(node)
                if text and PLATFORM_RELATION.search(text) and re.match(r"\s*(select|with|insert|update|delete)\b",
                                                                         text, re.I):
                    found.setdefault(text, f"{path.relative_to(ROOT)}:{node.lineno}")
    return {where: text for text, where in found.items()}


def test_every_statement_naming_a_platform_table_binds_to_its_columns(warehouse, layout):
    """Bound parameters become NULL. A literal that is only part of a statement does not parse and
    is left out; one that also reads a run's temp table or raw/validated is left out too."""
    con = duckdb.connect(str(warehouse))   # EXPLAIN of a write needs a writable database; nothing is run
    bound, problems = [], []
    for where, text in _statements().items():
        sql = re.sub(r"(?<![:\w]):(\w+)", "NULL", text)
        try:
            con.execute(f"EXPLAIN {sql}")
            bound.append(where)
        except duckdb.ParserException:
            continue
        except duckdb.CatalogException as exc:
            missing = set(PLATFORM_RELATION.findall(sql)) - set(layout)
            if missing:
                problems.append(f"{where}: {sorted(missing)} — {str(exc).splitlines()[0]}")
        except duckdb.BinderException as exc:
            problems.append(f"{where}: {str(exc).splitlines()[0]}")
    con.close()
    assert problems == [], "\n".join(problems)
    files = {w.split(":")[0] for w in bound}
    assert len(bound) >= 50, bound
    assert {"orchestration/run_report.py", "assets/publish/ledger.py", "quality/store.py",
            "assets/reconcile/engine.py", "assets/run_facts.py", "connectors/alert_sink.py"} <= files, files


def test_an_unknown_column_in_a_statement_is_caught(warehouse):
    """The check above binds columns, not only tables."""
    con = duckdb.connect(str(warehouse), read_only=True)
    with pytest.raises(duckdb.BinderException):
        con.execute("EXPLAIN SELECT count(*) FROM ops.sor_writes WHERE no_such_column = NULL")
    con.close()


# -- ensuring ---------------------------------------------------------------------------------------
def test_a_group_is_ensured_once_per_process_and_an_old_table_gains_its_new_columns(tmp_path):
    wh = Warehouse(f"duckdb:///{tmp_path / 'old.duckdb'}")
    first = LEDGER.tables[0].column_names[:20]   # the ledger as its first release made it
    with wh.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA ops"))
        conn.execute(sa.text(f"CREATE TABLE ops.sor_writes ({', '.join(f'{c} TEXT' for c in first)})"))
    statements: list[str] = []
    sa.event.listen(wh.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(statement))
    ensure(wh, LEDGER)
    with wh.begin() as conn:
        assert wh.table_columns(conn, "ops", "sor_writes") == list(LEDGER.tables[0].column_names)
    ddl = [s for s in statements if s.startswith(("CREATE", "ALTER"))]
    assert len(ddl) == 1 + len(LEDGER.tables[0].column_names) - len(first)   # the schema, each added column
    statements.clear()
    same = Warehouse(wh.url)     # another Warehouse of the same URL: what was ensured is remembered too
    sa.event.listen(same.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *rest: statements.append(statement))
    ensure(wh, LEDGER)
    ensure(same, LEDGER)
    assert statements == []
    same.dispose()
    wh.dispose()


def test_the_column_lookup_answers_as_information_schema_does(warehouse, tmp_path):
    """connectors.warehouse.column_names reads DuckDB's catalog directly (its information_schema
    view costs twice as much): for every table and view, a temporary table and a relation that
    does not exist, the same columns in the same order."""
    from trueup.connectors.warehouse import column_names, schema_columns

    copy = tmp_path / "w.duckdb"
    copy.write_bytes(warehouse.read_bytes())
    wh = Warehouse(f"duckdb:///{copy}")
    try:
        with wh.begin() as conn:
            conn.execute(sa.text("CREATE TEMP TABLE scratch AS SELECT 1 AS b, 'x' AS a"))
            relations = conn.execute(sa.text(
                "SELECT DISTINCT table_schema, table_name FROM information_schema.columns")).fetchall()
            assert ("main", "scratch") in relations and len(relations) > 10
            for schema, table in [*relations, ("ops", "no_such_table"), ("no_such_schema", "sync_runs")]:
                expected = [r[0] for r in conn.execute(sa.text(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = :s AND table_name = :t "
                    "ORDER BY ordinal_position"), {"s": schema, "t": table})]
                assert column_names(conn, schema, table) == expected, (schema, table)
            assert column_names(conn, "main", "scratch") == ["b", "a"]
            # a whole schema in one read (a reconciliation's lookups) gives each table what it gives alone
            for schema in {s for s, _ in relations} | {"no_such_schema"}:
                tables = sorted(t for s, t in relations if s == schema)
                assert schema_columns(conn, schema) == {t: column_names(conn, schema, t) for t in tables}, schema
    finally:
        wh.dispose()
