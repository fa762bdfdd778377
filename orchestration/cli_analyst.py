"""`trueup analyst-role NAME`: read-only access for analysts, so no analyst query blocks a run or
waits for one.

- PostgreSQL warehouse: creates (or updates) the login role NAME with the password in
  TRUEUP_ANALYST_PASSWORD (a secret: from the environment only, never an argument). The role
  reads the schemas analysts query (ANALYST_SCHEMAS) — the tables there now and, through default
  privileges, the ones the runs create later (dbt rebuilds the marts every night) — and its
  sessions are read-only. MVCC keeps its queries and the runs apart.
- DuckDB warehouse: there are no roles. Analysts open the copy every nightly and reconcile run
  publishes (assets/analyst_snapshot.py): the command says where it is.
"""
from __future__ import annotations

import os
import re

from trueup.orchestration.commands import CliError
from trueup.orchestration.config import Settings

#: what an analyst reads (the README's analyst questions, the ROI marts and their inputs)
ANALYST_SCHEMAS = ("marts", "reference", "recon", "quality", "ops", "staging")
PASSWORD_VARIABLE = "TRUEUP_ANALYST_PASSWORD"


def grant_statements(conn, role: str, schemas: tuple[str, ...] = ANALYST_SCHEMAS) -> list[str]:
    """The statements that make `role` a read-only reader of `schemas`, with every identifier
    and literal quoted by PostgreSQL itself (format %I / %L)."""
    import sqlalchemy as sa   # here, not at the top: `trueup`'s every command loads this module

    def fmt(template: str, *args: str) -> str:
        names = ", ".join(f":a{i}" for i in range(len(args)))
        return conn.execute(sa.text(f"SELECT format('{template}', {names})"),
                            {f"a{i}": a for i, a in enumerate(args)}).scalar_one()

    database = conn.execute(sa.text("SELECT current_database()")).scalar_one()
    out = [fmt("GRANT CONNECT ON DATABASE %I TO %I", database, role),
           fmt("ALTER ROLE %I SET default_transaction_read_only = on", role)]
    for schema in schemas:
        out += [fmt("CREATE SCHEMA IF NOT EXISTS %I", schema),
                fmt("GRANT USAGE ON SCHEMA %I TO %I", schema, role),
                fmt("GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I", schema, role),
                # tables this owner creates later (the nightly rebuilds) are readable too
                fmt("ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT ON TABLES TO %I", schema, role)]
    return out


def create_analyst_role(wh, role: str, password: str) -> None:
    import sqlalchemy as sa

    with wh.begin() as conn:
        exists = conn.execute(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role}).first()
        verb = "ALTER" if exists else "CREATE"
        login = conn.execute(sa.text(f"SELECT format('{verb} ROLE %I LOGIN PASSWORD %L', :r, :p)"),
                             {"r": role, "p": password}).scalar_one()
        conn.execute(sa.text(login))
        for statement in grant_statements(conn, role):
            conn.execute(sa.text(statement))


def cmd_analyst_role(args, settings: Settings) -> None:
    from trueup.assets.analyst_snapshot import snapshot_path
    from trueup.orchestration.warehouse_session import warehouse_session

    if not settings.warehouse_is_postgres:
        print(f"The warehouse is DuckDB: there are no roles. Analysts open the read-only copy each nightly and "
              f"reconcile run publishes:\n  duckdb -readonly {snapshot_path(settings.home)}")
        return
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", args.name):
        raise CliError(f"role name {args.name!r}: use lower-case letters, digits and _ (at most 63)")
    password = os.environ.get(PASSWORD_VARIABLE)
    if not password:
        raise CliError(f"set {PASSWORD_VARIABLE} to the analyst role's password (it is never taken as an argument)")
    with warehouse_session(settings.warehouse_url) as wh:
        create_analyst_role(wh, args.name, password)
    print(f"role {args.name}: reads {', '.join(ANALYST_SCHEMAS)} (now and as the runs rebuild them), "
          f"read-only sessions")


def add_analyst_parser(sub) -> None:
    p = sub.add_parser("analyst-role", help="read-only access for analysts (PostgreSQL: a login role; "
                                            "DuckDB: where the read-only copy is)")
    p.add_argument("name", help="the role to create or update (PostgreSQL)")
    p.set_defaults(func=cmd_analyst_role)
