"""source_vs_warehouse: each source object of one day ↔ its copy in raw, per partition.

The live source's rows for day D are read again through the ingest's own extractors (so values
are formatted exactly as landed): the ERP database by updated_at window, the day's verified
export files, the CRM search API. They are staged in a temp table and compared in SQL with the
warehouse copy:
- ERP tables and CRM objects: for each record the source shows in D, and each record whose
  latest landed version lies in partition D, raw's latest version. A record raw holds for D that
  the source no longer shows in D is looked up at the source (`extra["lookup"]`): if the source
  has it with that version or a later one (it changed since — very often by Trueup's own
  write-back — or is the platform's own write, landed on the night that made it), that is no
  break; only a record the source no longer has at all is an extra_key;
- exports: the rows of partition D as landed (a day's file is an immutable snapshot).
Aggregates first — row count, amount sum, and a content hash (md5 over the ordered row hashes);
only when they disagree are keys compared: missing_key (in the source, not landed), extra_key
(landed, not in the source), content_mismatch (same key, different content). Partition-level
breaks row_count_mismatch and amount_sum_mismatch carry no money at risk (the key-level breaks
do), so nothing is counted twice. Breaks are scoped to the partition: a run of day D resolves
only day D's breaks.
"""
from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from trueup.assets.ingest.raw_store import latest_version_sql
from trueup.connectors.warehouse import ident

from ..sql import json_obj, num
from . import BASE_COLUMNS, RuleContext

AMOUNT_COLUMN = {"crm_deals": "amount", "erp_sales_orders": "total_amount", "erp_invoices": "amount",
                 "erp_payments": "amount"}
CURRENCY_COLUMN = {"crm_deals": "deal_currency_code", "erp_sales_orders": "currency", "erp_invoices": "currency",
                   "erp_payments": "currency", "erp_customers": "currency"}


def _row_hash(cols: list[str], alias: str) -> str:
    parts = " || '|' || ".join(f"coalesce({alias}.{ident(c)}, '\\N')" for c in cols)
    return f"md5({parts})"


def differs(n: int, s: str = "s", w: str = "w") -> str:
    """Row content differs: column by column (cheaper than hashing every row on both sides)."""
    return "(" + " OR ".join(f"{s}.c_{i} IS DISTINCT FROM {w}.c_{i}" for i in range(n)) + ")"


def compare_object(ctx: RuleContext, obj, source: pd.DataFrame, partition: str, snapshot: bool) -> tuple[int, int, int]:
    """Stage `source` (text columns) and compare it with raw.<obj> for `partition`."""
    d, wh = ctx.dialect, ctx.extra["warehouse"]
    cols = [c for c in obj.columns]
    key = ident(obj.key)
    amount = AMOUNT_COLUMN.get(obj.name)
    ccy = CURRENCY_COLUMN.get(obj.name)
    col_list = ", ".join(ident(c) for c in cols)
    ctx.temp("sw_src", f"SELECT {col_list} FROM raw.{ident(obj.raw_table)} WHERE 1 = 0")
    if len(source):
        staged = source.reindex(columns=cols).astype(object).where(source.reindex(columns=cols).notna(), None)
        wh.insert_df(ctx.conn, "temp" if d == "duckdb" else "pg_temp", "sw_src", staged)
    raw = f"raw.{ident(obj.raw_table)}"
    if snapshot:
        wh_rows = (f"SELECT {col_list} FROM (SELECT r.*, row_number() OVER (PARTITION BY r.{key} ORDER BY "
                   f"r.updated_at DESC, r._loaded_at DESC) AS _rn FROM {raw} r WHERE r._partition = :p) x "
                   "WHERE _rn = 1")
    else:
        wanted = f"{key} IN (SELECT {key} FROM sw_src UNION SELECT {key} FROM {raw} WHERE _partition = :p)"
        ctx.temp("sw_latest", f"SELECT {col_list}, _partition FROM ({latest_version_sql(obj, wanted)}) x "
                              f"WHERE _rn = 1 AND (_partition = :p OR {key} IN (SELECT {key} FROM sw_src))",
                 p=partition)
        _drop_explained(ctx, obj, wh)
        wh_rows = f"SELECT {col_list} FROM sw_latest"
    amt = lambda a: num(d, f"{a}.{ident(amount)}") if amount else "CAST(NULL AS DECIMAL(18,2))"  # noqa: E731
    cur = lambda a: f"{a}.{ident(ccy)}" if ccy else "CAST(NULL AS TEXT)"  # noqa: E731
    for side, rows in (("sw_s", "SELECT * FROM sw_src"), ("sw_w", wh_rows)):
        ctx.temp(side, f"SELECT t.{key} AS k, {_row_hash(cols, 't')} AS h, {amt('t')} AS amount, {cur('t')} AS ccy, "
                       f"{', '.join(f't.{ident(c)} AS c_{i}' for i, c in enumerate(cols))} FROM ({rows}) t", p=partition)
    agg = ("SELECT count(*) AS n, coalesce(sum(amount), 0) AS amount, "
           "coalesce(md5(string_agg(h, '' ORDER BY k, h)), '') AS h FROM {t}")
    s = ctx.conn.execute(sa.text(agg.format(t="sw_s"))).one()
    w = ctx.conn.execute(sa.text(agg.format(t="sw_w"))).one()
    L, R = f"'{obj.system}'", "'warehouse'"
    pk = f"{obj.name}@{partition}"
    det = json_obj(d, {"object": f"'{obj.name}'", "partition": ":p", "source_rows": ":sn", "warehouse_rows": ":wn",
                       "source_amount": ":sa", "warehouse_amount": ":wa"})
    prm = {"p": partition, "pk": pk, "sn": int(s.n), "wn": int(w.n), "sa": str(s.amount), "wa": str(w.amount)}
    if s.n != w.n:
        ctx.found(f"SELECT 'row_count_mismatch', :pk, {L}, {R}, NULL, NULL, 0, NULL, {det}", BASE_COLUMNS, **prm)
    if abs(float(s.amount) - float(w.amount)) > ctx.settings.tolerance:
        ctx.found(f"SELECT 'amount_sum_mismatch', :pk, {L}, {R}, CAST(:sa AS DECIMAL(18,2)), "
                  f"CAST(:wa AS DECIMAL(18,2)), 0, NULL, {det}", BASE_COLUMNS, **prm)
    if s.h != w.h or s.n != w.n:
        kd = json_obj(d, {"object": f"'{obj.name}'", "partition": ":p", "key": "coalesce(s.k, w.k)"})
        ctx.found(f"SELECT CASE WHEN w.k IS NULL THEN 'missing_key' WHEN s.k IS NULL THEN 'extra_key' "
                  f"ELSE 'content_mismatch' END, :obj || ':' || coalesce(s.k, w.k), {L}, {R}, s.amount, w.amount, "
                  "CASE WHEN w.k IS NULL THEN s.amount WHEN s.k IS NULL THEN w.amount "
                  "ELSE abs(coalesce(s.amount, 0) - coalesce(w.amount, 0)) END, coalesce(s.ccy, w.ccy), "
                  f"{kd} FROM sw_s s FULL OUTER JOIN sw_w w ON s.k = w.k "
                  f"WHERE s.k IS NULL OR w.k IS NULL OR {differs(len(cols))}", BASE_COLUMNS, p=partition,
                  obj=obj.name)
    matched = ctx.scalar("SELECT count(*) FROM sw_s s JOIN sw_w w ON s.k = w.k AND s.h = w.h")
    return int(s.n), int(w.n), int(matched)


def _drop_explained(ctx: RuleContext, obj, wh) -> None:
    """Take out of sw_latest the records raw holds for D that the source no longer shows in D but
    still has, with that version or a later one; count them (and the platform's own writes among
    them) in ctx.extra['explained']."""
    key = ident(obj.key)
    gone = [r[0] for r in ctx.conn.execute(sa.text(
        f"SELECT {key} FROM sw_latest WHERE {key} IS NOT NULL AND {key} NOT IN "
        f"(SELECT {key} FROM sw_src WHERE {key} IS NOT NULL)"))]
    lookup = ctx.extra.get("lookup")
    if not gone or lookup is None:
        return
    now = lookup(obj, gone)
    ctx.temp("sw_now", "SELECT CAST(NULL AS TEXT) AS k, CAST(NULL AS TEXT) AS updated_at WHERE 1 = 0")
    if len(now):
        staged = now[[obj.key, "updated_at"]].set_axis(["k", "updated_at"], axis=1).astype(object)
        wh.insert_df(ctx.conn, "temp" if ctx.dialect == "duckdb" else "pg_temp", "sw_now",
                     staged.where(staged.notna(), None))
    explained = [r[0] for r in ctx.conn.execute(sa.text(
        f"SELECT l.{key} FROM sw_latest l JOIN sw_now n ON n.k = l.{key} "
        f"WHERE n.updated_at >= l.updated_at OR l.updated_at IS NULL"))]
    if not explained:
        return
    ctx.conn.execute(sa.text(f"DELETE FROM sw_latest WHERE {key} IN (SELECT l.{key} FROM sw_latest l JOIN sw_now n "
                             f"ON n.k = l.{key} WHERE n.updated_at >= l.updated_at OR l.updated_at IS NULL)"))
    echo = set(ctx.extra.get("echo_versions", {}).get(obj.name, ()))
    later = now[now[obj.key].astype(str).isin(set(map(str, explained)))]
    tally = ctx.extra.setdefault("explained", {}).setdefault(obj.name, {"changed_since": 0, "platform_echo": 0})
    tally["changed_since"] += len(explained)
    tally["platform_echo"] += int(later["updated_at"].isin(echo).sum())


def find(ctx: RuleContext) -> tuple[int, int, int]:
    """ctx.extra: {'warehouse': Warehouse, 'partition': 'YYYY-MM-DD',
    'sources': {object name: (SourceObject, DataFrame of the live source rows, snapshot?)},
    'lookup': (SourceObject, keys) -> the source's current rows of those keys (optional),
    'echo_versions': {object name: modification times of the platform's own confirmed writes}}"""
    totals = [0, 0, 0]
    for obj, df, snapshot in ctx.extra["sources"].values():
        if not ctx.columns("raw", obj.raw_table):
            continue  # nothing landed yet for this object
        for i, v in enumerate(compare_object(ctx, obj, df, ctx.extra["partition"], snapshot)):
            totals[i] += v
    _explain(ctx)
    return tuple(totals)


#: what each finding means, in plain words (the warehouse copy is Trueup's to fix)
REASONS = {
    "row_count_mismatch": "the source holds a different number of rows for this day than raw",
    "amount_sum_mismatch": "the amounts of this day sum differently in the source and in raw",
    "missing_key": "the source has this record for this day; raw does not: re-run the ingest of the day",
    "extra_key": "raw holds this record for this day; the source no longer has it at all",
    "content_mismatch": "the record in raw differs from the version the source has for this day: re-run the ingest of the day",
}


def _explain(ctx: RuleContext) -> None:
    cases = " ".join(f"WHEN '{t}' THEN '{why}'" for t, why in REASONS.items())
    ctx.exec("UPDATE recon_found SET category = 'break', owner_system = 'trueup', problem_date = CAST(:p AS DATE), "
             f"chain_key = business_key, reason = business_key || ': ' || CASE break_type {cases} ELSE break_type END "
             "WHERE reason IS NULL", p=ctx.extra["partition"])
