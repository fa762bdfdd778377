"""SQLite-backed state of the sandbox CRM (HubSpot CRM v3 subset, see docs/architecture.md).

One table ``records`` holds companies, contacts and deals: integer id, properties as a JSON
object of strings, created/updated epoch-ms columns (the indexed truth for createdate and the
modification date), an archived flag, and ``visible_ms`` (when the last API write becomes
visible to search: eventual-consistency knob). ``associations`` maps a record to its one
company (deals -> company).

The data generator seeds/advances the world with :meth:`CrmStore.load_records`; the HTTP
server uses the ``api_*`` methods, which implement HubSpot's batch write semantics.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import queue
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import pandas as pd

OBJECT_TYPES = ("companies", "contacts", "deals")

MODIFIED_PROP = {"companies": "hs_lastmodifieddate", "contacts": "lastmodifieddate", "deals": "hs_lastmodifieddate"}

#: properties created with "unique values" in the portal: usable as idProperty
UNIQUE_PROPS = {"companies": ("erp_customer_number",), "contacts": ("email",), "deals": ("erp_order_number",)}

NUMERIC_PROPS = {"companies": frozenset({"ar_balance", "ar_overdue_amount"}),
                 "contacts": frozenset(),
                 "deals": frozenset({"amount"})}

#: date(time) properties stored as ISO strings (filters accept epoch-ms or ISO)
DATE_PROPS = {"companies": frozenset({"last_payment_date"}), "contacts": frozenset(), "deals": frozenset({"closedate"})}

_SYSTEM = ("hs_object_id", "createdate")
KNOWN_PROPERTIES: dict[str, frozenset[str]] = {
    "companies": frozenset({"name", "domain", "country", "industry", "lifecyclestage", "tax_id",
                            "erp_customer_number", "ar_balance", "ar_overdue_amount", "last_payment_date",
                            *_SYSTEM, "hs_lastmodifieddate"}),
    "contacts": frozenset({"email", "firstname", "lastname", "phone", "associatedcompanyid",
                           *_SYSTEM, "lastmodifieddate"}),
    "deals": frozenset({"dealname", "amount", "deal_currency_code", "dealstage", "pipeline", "closedate",
                        "erp_order_number", *_SYSTEM, "hs_lastmodifieddate"}),
}
READ_ONLY = {t: frozenset({"hs_object_id", "createdate", MODIFIED_PROP[t]}) for t in OBJECT_TYPES}

#: ids created through the API start here (the generator uses lower ids)
API_ID_START = 9_000_000_000_000

_RESERVED_COLS = {"id", "created_ms", "updated_ms", "archived", "archived_ms", "company_id"}

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS records(
        type TEXT NOT NULL, id INTEGER NOT NULL, props TEXT NOT NULL DEFAULT '{}',
        created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
        archived INTEGER NOT NULL DEFAULT 0, archived_ms INTEGER,
        visible_ms INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY(type, id))""",
    "CREATE INDEX IF NOT EXISTS ix_records_mod ON records(type, archived, updated_ms, id)",
    "CREATE INDEX IF NOT EXISTS ix_records_created ON records(type, archived, created_ms, id)",
    """CREATE TABLE IF NOT EXISTS associations(
        type TEXT NOT NULL, id INTEGER NOT NULL, company_id INTEGER NOT NULL, PRIMARY KEY(type, id))""",
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
]
for _t, _props in UNIQUE_PROPS.items():
    for _p in _props:
        _SCHEMA.append(f"CREATE INDEX IF NOT EXISTS ix_uq_{_t}_{_p} ON records(json_extract(props, '$.{_p}')) "
                       f"WHERE type = '{_t}'")


def ms_to_iso(ms: int) -> str:
    """Epoch ms -> ``2024-01-02T03:04:05.678Z``."""
    ms = int(ms)
    s, r = divmod(ms, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{r:03d}Z"


def parse_time_ms(value: Any) -> int:
    """Epoch ms (int or digit string) or ISO-8601 (date or datetime; naive = UTC) -> epoch ms."""
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    s = str(value).strip()
    if s.lstrip("-").isdigit():
        return int(s)
    if s.endswith("Z") or s.endswith("z"):
        s = s[:-1] + "+00:00"
    d = _dt.datetime.fromisoformat(s)
    if d.tzinfo is None:
        d = d.replace(tzinfo=_dt.timezone.utc)
    return int(round(d.timestamp() * 1000))


def now_ms() -> int:
    return int(time.time() * 1000)


def _check_type(object_type: str) -> str:
    if object_type not in OBJECT_TYPES:
        raise ValueError(f"unknown object type {object_type!r}; expected one of {OBJECT_TYPES}")
    return object_type


def _to_str(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        if math.isnan(v):
            return None
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (pd.Timestamp, _dt.datetime)):
        ts = pd.Timestamp(v)
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        return ms_to_iso(int(ts.value // 1_000_000))
    if isinstance(v, _dt.date):
        return v.isoformat()
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return str(v)


class CrmStore:
    """Thread-safe store: a small pool of sqlite connections, one lock for writes."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._pool: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        self._wlock = threading.RLock()
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            for stmt in _SCHEMA:
                c.execute(stmt)
            c.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('next_api_id', ?)", (API_ID_START,))

    # ------------------------------------------------------------------ plumbing
    def _connect(self) -> sqlite3.Connection:
        c = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        c.execute("PRAGMA busy_timeout=30000")
        c.execute("PRAGMA synchronous=NORMAL")
        c.execute("PRAGMA cache_size=-65536")
        with self._all_lock:
            self._all.append(c)
        return c

    @contextlib.contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        try:
            c = self._pool.get_nowait()
        except queue.Empty:
            c = self._connect()
        try:
            yield c
        finally:
            self._pool.put(c)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._wlock, self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                yield c
            except BaseException:
                c.execute("ROLLBACK")
                raise
            c.execute("COMMIT")

    def close(self) -> None:
        with self._all_lock:
            for c in self._all:
                try:
                    c.close()
                except sqlite3.Error:
                    pass
            self._all.clear()
        while not self._pool.empty():
            self._pool.get_nowait()

    # ------------------------------------------------------------------ generator API
    def load_records(self, object_type: str, df: pd.DataFrame) -> int:
        """Bulk upsert by id with column-level MERGE of properties; keeps the given timestamps."""
        t = _check_type(object_type)
        n = len(df)
        if n == 0:
            return 0
        ids = [int(x) for x in df["id"].tolist()]
        created = [int(x) for x in df["created_ms"].tolist()]
        updated = [int(x) for x in df["updated_ms"].tolist()]
        if "archived" in df.columns:
            archived = [1 if (x is not None and x == x and bool(x)) else 0 for x in df["archived"].tolist()]
        else:
            archived = [0] * n
        prop_cols = [str(c) for c in df.columns if c not in _RESERVED_COLS]
        col_vals = [[_to_str(v) for v in df[c].tolist()] for c in prop_cols]
        modp = MODIFIED_PROP[t]
        dumps = json.dumps
        patches = []
        for i in range(n):
            d = {c: vals[i] for c, vals in zip(prop_cols, col_vals)}
            d["createdate"] = ms_to_iso(created[i])
            d[modp] = ms_to_iso(updated[i])
            d["hs_object_id"] = str(ids[i])
            patches.append(dumps(d, separators=(",", ":")))
        with self._write() as c:
            existing: set[int] = set()
            if c.execute("SELECT 1 FROM records WHERE type=? LIMIT 1", (t,)).fetchone():
                if n > 50_000:
                    existing = {r[0] for r in c.execute("SELECT id FROM records WHERE type=?", (t,))}
                else:
                    for k in range(0, n, 900):
                        chunk = ids[k:k + 900]
                        q = f"SELECT id FROM records WHERE type=? AND id IN ({','.join('?' * len(chunk))})"
                        existing.update(r[0] for r in c.execute(q, (t, *chunk)))
            upd, ins = [], []
            for i in range(n):
                if ids[i] in existing:
                    upd.append((patches[i], created[i], updated[i], archived[i], archived[i], updated[i], t, ids[i]))
                else:
                    ins.append((t, ids[i], patches[i], created[i], updated[i], archived[i],
                                updated[i] if archived[i] else None))
            if upd:
                c.executemany(
                    "UPDATE records SET props=json_patch(props, ?), created_ms=?, updated_ms=?, archived=?, "
                    "archived_ms=CASE WHEN ? THEN COALESCE(archived_ms, ?) ELSE NULL END, visible_ms=0 "
                    "WHERE type=? AND id=?", upd)
            if ins:
                c.executemany(
                    "INSERT OR REPLACE INTO records(type, id, props, created_ms, updated_ms, archived, archived_ms, "
                    "visible_ms) VALUES (?, ?, json_patch('{}', ?), ?, ?, ?, ?, 0)", ins)
            if "company_id" in df.columns:
                comp = df["company_id"].tolist()
                put, drop = [], []
                for i, v in enumerate(comp):
                    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
                        drop.append((t, ids[i]))
                    else:
                        put.append((t, ids[i], int(v)))
                if put:
                    c.executemany("INSERT OR REPLACE INTO associations(type, id, company_id) VALUES (?, ?, ?)", put)
                if drop and existing:
                    c.executemany("DELETE FROM associations WHERE type=? AND id=?", drop)
        return n

    def archive(self, object_type: str, ids: Iterable[int], at_ms: int) -> int:
        """Archive (soft-delete) records; sets archivedAt and updatedAt to ``at_ms``."""
        t = _check_type(object_type)
        at_ms = int(at_ms)
        iso = ms_to_iso(at_ms)
        modp = MODIFIED_PROP[t]
        rows = [(f'{{"{modp}":"{iso}"}}', at_ms, at_ms, t, int(i)) for i in ids]
        with self._write() as c:
            before = c.total_changes
            c.executemany("UPDATE records SET props=json_patch(props, ?), archived=1, archived_ms=?, updated_ms=?, "
                          "visible_ms=0 WHERE type=? AND id=? AND archived=0", rows)
            return c.total_changes - before

    def count(self, object_type: str, archived: bool | None = False) -> int:
        t = _check_type(object_type)
        with self._conn() as c:
            if archived is None:
                return c.execute("SELECT COUNT(*) FROM records WHERE type=?", (t,)).fetchone()[0]
            return c.execute("SELECT COUNT(*) FROM records WHERE type=? AND archived=?",
                             (t, int(bool(archived)))).fetchone()[0]

    def get(self, object_type: str, id: int | str) -> dict | None:
        """One record as ``{id, created_ms, updated_ms, archived, archived_ms, company_id, properties}``."""
        t = _check_type(object_type)
        try:
            rid = int(id)
        except (TypeError, ValueError):
            return None
        with self._conn() as c:
            rows = self._rows(c, f"{_SELECT} WHERE r.type=? AND r.id=?", (t, rid))
        return rows[0] if rows else None

    def all_records(self, object_type: str, archived: bool | None = None) -> pd.DataFrame:
        """id, created_ms, updated_ms, archived, company_id + one column per property."""
        t = _check_type(object_type)
        sql = f"{_SELECT} WHERE r.type=?"
        params: tuple = (t,)
        if archived is not None:
            sql += " AND r.archived=?"
            params = (t, int(bool(archived)))
        with self._conn() as c:
            raw = c.execute(sql + " ORDER BY r.id", params).fetchall()
        base = pd.DataFrame({
            "id": pd.array([r[0] for r in raw], dtype="int64"),
            "created_ms": pd.array([r[2] for r in raw], dtype="int64"),
            "updated_ms": pd.array([r[3] for r in raw], dtype="int64"),
            "archived": pd.array([bool(r[4]) for r in raw], dtype="bool"),
            "company_id": pd.array([r[6] for r in raw], dtype="Int64"),
        })
        props = pd.DataFrame.from_records([json.loads(r[1]) for r in raw], index=base.index) if raw else pd.DataFrame()
        props = props[[c for c in props.columns if c not in base.columns]]
        return pd.concat([base, props], axis=1)

    # ------------------------------------------------------------------ read helpers for the API
    @staticmethod
    def _rows(c: sqlite3.Connection, sql: str, params: Iterable) -> list[dict]:
        out = []
        for r in c.execute(sql, tuple(params)):
            out.append({"id": r[0], "properties": json.loads(r[1]), "created_ms": r[2], "updated_ms": r[3],
                        "archived": bool(r[4]), "archived_ms": r[5], "company_id": r[6]})
        return out

    def list_page(self, object_type: str, after_id: int, limit: int, archived: bool) -> list[dict]:
        """Records with id >= after_id ordered by id (limit+1 rows so the caller knows if more exist)."""
        with self._conn() as c:
            return self._rows(c, f"{_SELECT} WHERE r.type=? AND r.archived=? AND r.id>=? ORDER BY r.id LIMIT ?",
                              (object_type, int(archived), int(after_id), int(limit) + 1))

    def get_many(self, object_type: str, ids: list[int], archived: bool = False) -> dict[int, dict]:
        out: dict[int, dict] = {}
        with self._conn() as c:
            for k in range(0, len(ids), 500):
                chunk = ids[k:k + 500]
                q = f"{_SELECT} WHERE r.type=? AND r.archived=? AND r.id IN ({','.join('?' * len(chunk))})"
                for row in self._rows(c, q, (object_type, int(archived), *chunk)):
                    out[row["id"]] = row
        return out

    def find_unique(self, object_type: str, prop: str, values: list[str], archived: bool = False,
                    conn: sqlite3.Connection | None = None) -> dict[str, dict]:
        """value -> record (lowest id wins if the generator created duplicates)."""
        if prop not in UNIQUE_PROPS[object_type]:
            raise ValueError(f"{prop} is not a unique property of {object_type}")
        out: dict[str, dict] = {}
        expr = f"json_extract(r.props, '$.{prop}')"
        with contextlib.ExitStack() as st:
            c = conn or st.enter_context(self._conn())
            for k in range(0, len(values), 500):
                chunk = [str(v) for v in values[k:k + 500]]
                # no ORDER BY: it would make the planner scan the primary key instead of the unique index
                q = (f"{_SELECT} WHERE r.type='{object_type}' AND {expr} IN ({','.join('?' * len(chunk))}) "
                     f"AND r.archived=?")
                for row in self._rows(c, q, (*chunk, int(archived))):
                    key = str(row["properties"].get(prop))
                    if key not in out or row["id"] < out[key]["id"]:
                        out[key] = row
        return out

    def search(self, sql: str, count_sql: str, params: list) -> tuple[int, list[dict]]:
        with self._conn() as c:
            total = c.execute(count_sql, params[:-2]).fetchone()[0]
            return total, self._rows(c, sql, params)

    # ------------------------------------------------------------------ batch writes (HubSpot semantics)
    def _next_id(self, c: sqlite3.Connection) -> int:
        v = c.execute("SELECT value FROM meta WHERE key='next_api_id'").fetchone()[0]
        c.execute("UPDATE meta SET value=? WHERE key='next_api_id'", (v + 1,))
        return v

    @staticmethod
    def validate_properties(object_type: str, props: dict) -> list[dict]:
        """HubSpot-style per-property validation results (empty = valid)."""
        errs = []
        known = KNOWN_PROPERTIES[object_type]
        for name, value in props.items():
            if name not in known:
                msg = f'Property "{name}" does not exist'
                errs.append({"isValid": False, "message": msg, "error": "PROPERTY_DOESNT_EXIST", "name": name,
                             "localizedErrorMessage": msg})
            elif name in READ_ONLY[object_type]:
                msg = f"{name} is a read only property; its value cannot be set."
                errs.append({"isValid": False, "message": msg, "error": "READ_ONLY_VALUE", "name": name,
                             "localizedErrorMessage": msg})
            elif name in NUMERIC_PROPS[object_type] and value not in (None, ""):
                ok = True
                try:
                    ok = math.isfinite(float(str(value)))
                except ValueError:
                    ok = False
                if not ok:
                    msg = f"{value} was not a valid number."
                    errs.append({"isValid": False, "message": msg, "error": "INVALID_FLOAT", "name": name,
                                 "localizedErrorMessage": msg})
        return errs

    def _unique_conflicts(self, c, object_type: str, props: dict, own_id: int | None,
                          pending: dict[tuple[str, str], int]) -> list[dict]:
        errs = []
        for p in UNIQUE_PROPS[object_type]:
            v = props.get(p)
            if v in (None, ""):
                continue
            other = self.find_unique(object_type, p, [str(v)], conn=c).get(str(v))
            other_id = other["id"] if other else pending.get((p, str(v)))
            if other_id is not None and other_id != own_id:
                msg = f"{v} already has that value."
                errs.append({"isValid": False, "message": msg, "error": "INVALID_UNIQUE_VALUE", "name": p,
                             "localizedErrorMessage": msg})
        return errs

    def _apply(self, c, object_type: str, rid: int | None, props: dict, stamp_ms: int, visible_ms: int) -> int:
        """Create (rid None) or merge-update one record, stamping the modification date."""
        modp = MODIFIED_PROP[object_type]
        patch = {k: (None if v in (None, "") else str(v)) for k, v in props.items()}
        patch[modp] = ms_to_iso(stamp_ms)
        if rid is None:
            rid = self._next_id(c)
            patch["createdate"] = ms_to_iso(stamp_ms)
            patch["hs_object_id"] = str(rid)
            c.execute("INSERT INTO records(type, id, props, created_ms, updated_ms, archived, visible_ms) "
                      "VALUES (?, ?, json_patch('{}', ?), ?, ?, 0, ?)",
                      (object_type, rid, json.dumps(patch), stamp_ms, stamp_ms, visible_ms))
        else:
            c.execute("UPDATE records SET props=json_patch(props, ?), updated_ms=?, visible_ms=? "
                      "WHERE type=? AND id=?", (json.dumps(patch), stamp_ms, visible_ms, object_type, rid))
        return rid

    @staticmethod
    def _error(message: str, ids: list[str], category: str = "VALIDATION_ERROR") -> dict:
        return {"status": "error", "category": category, "message": message, "context": {"ids": ids},
                "errors": [], "links": {}}

    @staticmethod
    def _invalid(errs: list[dict]) -> str:
        return "Property values were not valid: " + json.dumps(errs)

    def api_batch_upsert(self, object_type: str, inputs: list[tuple[str, str, dict]], stamp_ms: int,
                         visible_ms: int) -> tuple[list[dict], list[dict]]:
        """inputs: (idProperty, id value, properties). Returns (results with ``new``, errors)."""
        results, errors = [], []
        with self._write() as c:
            pending: dict[tuple[str, str], int] = {}
            for id_prop, idv, props in inputs:
                props = dict(props)
                errs = self.validate_properties(object_type, props)
                if errs:
                    errors.append(self._error(self._invalid(errs), [idv]))
                    continue
                props.setdefault(id_prop, idv)
                existing = self.find_unique(object_type, id_prop, [idv], conn=c).get(idv)
                own = existing["id"] if existing else None
                errs = self._unique_conflicts(c, object_type, props, own, pending)
                if errs:
                    errors.append(self._error(self._invalid(errs), [idv]))
                    continue
                rid = self._apply(c, object_type, own, props, stamp_ms, visible_ms)
                for p in UNIQUE_PROPS[object_type]:
                    if props.get(p) not in (None, ""):
                        pending[(p, str(props[p]))] = rid
                results.append((rid, existing is None))
            rows = {r["id"]: r for r in self._rows(
                c, f"{_SELECT} WHERE r.type=? AND r.id IN ({','.join('?' * len(results))})",
                (object_type, *[r[0] for r in results]))} if results else {}
        return [dict(rows[rid], new=new) for rid, new in results], errors

    def api_batch_update(self, object_type: str, inputs: list[tuple[str, dict]], id_property: str | None,
                         stamp_ms: int, visible_ms: int) -> tuple[list[dict], list[dict]]:
        """inputs: (id or unique value, properties). Returns (results, errors)."""
        done, errors = [], []
        with self._write() as c:
            pending: dict[tuple[str, str], int] = {}
            for idv, props in inputs:
                if id_property and id_property != "hs_object_id":
                    found = self.find_unique(object_type, id_property, [idv], conn=c).get(idv)
                else:
                    try:
                        found = self._rows(c, f"{_SELECT} WHERE r.type=? AND r.id=? AND r.archived=0",
                                           (object_type, int(idv)))
                    except (TypeError, ValueError):
                        found = []
                    found = found[0] if found else None
                if found is None:
                    errors.append(self._error("Object not found.  objectId are usually numeric.", [idv]))
                    continue
                errs = self.validate_properties(object_type, props) or \
                    self._unique_conflicts(c, object_type, props, found["id"], pending)
                if errs:
                    errors.append(self._error(self._invalid(errs), [idv]))
                    continue
                rid = self._apply(c, object_type, found["id"], props, stamp_ms, visible_ms)
                for p in UNIQUE_PROPS[object_type]:
                    if props.get(p) not in (None, ""):
                        pending[(p, str(props[p]))] = rid
                done.append(rid)
            rows = {r["id"]: r for r in self._rows(
                c, f"{_SELECT} WHERE r.type=? AND r.id IN ({','.join('?' * len(done))})",
                (object_type, *done))} if done else {}
        return [rows[rid] for rid in done], errors


_SELECT = ("SELECT r.id, r.props, r.created_ms, r.updated_ms, r.archived, r.archived_ms, a.company_id "
           "FROM records r LEFT JOIN associations a ON a.type = r.type AND a.id = r.id")
