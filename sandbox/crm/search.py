"""Translate a HubSpot CRM v3 search request body into SQL over the ``records`` table."""
from __future__ import annotations

from typing import Any

from .store import DATE_PROPS, KNOWN_PROPERTIES, MODIFIED_PROP, NUMERIC_PROPS, _SELECT, parse_time_ms

MAX_LIMIT = 200
MAX_RESULTS = 10_000
MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS_TOTAL = 18
QUERY_PROPS = {"companies": ("name", "domain"), "contacts": ("email", "firstname", "lastname", "phone"),
               "deals": ("dealname",)}
_CMP = {"EQ": "=", "NEQ": "!=", "LT": "<", "LTE": "<=", "GT": ">", "GTE": ">="}


class SearchError(ValueError):
    """A 400 VALIDATION_ERROR for the search request."""


def _kind(t: str, prop: str) -> tuple[str, str]:
    """(sql expression, kind) where kind in id|ms|num|date|str."""
    if prop == "hs_object_id":
        return "r.id", "id"
    if prop == MODIFIED_PROP[t]:
        return "r.updated_ms", "ms"
    if prop == "createdate":
        return "r.created_ms", "ms"
    if prop not in KNOWN_PROPERTIES[t]:
        raise SearchError(f"Property {prop!r} does not exist on {t}")
    raw = f"json_extract(r.props, '$.{prop}')"
    if prop in NUMERIC_PROPS[t]:
        return f"CAST({raw} AS REAL)", "num"
    if prop in DATE_PROPS[t]:
        return f"CAST(ROUND((julianday({raw}) - 2440587.5) * 86400000.0) AS INTEGER)", "date"
    return raw, "str"


def _conv(kind: str, value: Any, prop: str) -> Any:
    if value is None:
        raise SearchError(f"Missing value for filter on {prop}")
    try:
        if kind == "id":
            return int(str(value))
        if kind in ("ms", "date"):
            return parse_time_ms(value)
        if kind == "num":
            return float(str(value))
    except (TypeError, ValueError):
        raise SearchError(f"Invalid value {value!r} for filter on {prop}") from None
    return str(value)


def _filter_sql(t: str, f: dict, params: list) -> str:
    if not isinstance(f, dict):
        raise SearchError("filter must be an object")
    prop = f.get("propertyName")
    op = str(f.get("operator") or "EQ").upper()
    if not prop:
        raise SearchError("filter needs propertyName")
    expr, kind = _kind(t, prop)
    coll = " COLLATE NOCASE" if kind == "str" else ""
    if op == "HAS_PROPERTY":
        return f"{expr} IS NOT NULL"
    if op == "NOT_HAS_PROPERTY":
        return f"{expr} IS NULL"
    if op in _CMP:
        params.append(_conv(kind, f.get("value"), prop))
        if op == "NEQ":
            return f"({expr} IS NULL OR {expr} != ?{coll})"
        return f"{expr} {_CMP[op]} ?{coll if op == 'EQ' else ''}"
    if op == "BETWEEN":
        params.append(_conv(kind, f.get("value"), prop))
        params.append(_conv(kind, f.get("highValue"), prop))
        return f"{expr} BETWEEN ? AND ?"
    if op in ("IN", "NOT_IN"):
        vals = f.get("values")
        if not isinstance(vals, list) or not vals:
            raise SearchError(f"{op} filter on {prop} needs a non-empty 'values' list")
        params.extend(_conv(kind, v, prop) for v in vals)
        marks = ",".join("?" * len(vals))
        if op == "IN":
            return f"{expr}{coll} IN ({marks})"
        return f"({expr} IS NULL OR {expr}{coll} NOT IN ({marks}))"
    if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
        v = str(f.get("value") or "").replace("*", "")
        params.append(f"%{v}%")
        if op == "CONTAINS_TOKEN":
            return f"{expr} LIKE ?"
        return f"({expr} IS NULL OR {expr} NOT LIKE ?)"
    raise SearchError(f"Unsupported operator {op!r}")


def _sorts(t: str, sorts: Any) -> list[str]:
    out = []
    for s in sorts or []:
        if isinstance(s, str):  # the SDK types sorts as list[str]: "prop" or "-prop"
            prop, desc = (s[1:], True) if s.startswith("-") else (s, False)
        elif isinstance(s, dict):
            prop = s.get("propertyName")
            desc = str(s.get("direction") or "ASCENDING").upper().startswith("DESC")
        else:
            raise SearchError("sorts must be objects {propertyName, direction}")
        if not prop:
            raise SearchError("sort needs propertyName")
        expr, kind = _kind(t, prop)
        if kind == "id":
            out.append(f"r.id {'DESC' if desc else 'ASC'}")
            continue
        if kind not in ("ms",):  # records without the property sort last either way
            out.append(f"({expr} IS NULL) ASC")
        out.append(f"{expr} {'DESC' if desc else 'ASC'}")
    if not any(o.startswith("r.id ") for o in out):
        out.append("r.id ASC")  # deterministic paging: ties broken by id
    return out


def build_search(t: str, body: dict, visible_at_ms: int) -> tuple[str, str, list, int, int]:
    """-> (select sql, count sql, params (last two = limit, offset), limit, offset)."""
    if not isinstance(body, dict):
        raise SearchError("Invalid input JSON on line 1")
    try:
        limit = int(body.get("limit", 10) if body.get("limit") is not None else 10)
        after = int(body.get("after") or 0)
    except (TypeError, ValueError):
        raise SearchError("limit and after must be integers") from None
    if limit < 1 or limit > MAX_LIMIT:
        raise SearchError(f"limit must be between 1 and {MAX_LIMIT} (got {limit})")
    if after < 0:
        raise SearchError("after must be a non-negative offset")
    if after >= MAX_RESULTS:
        raise SearchError(f"Search results are capped at {MAX_RESULTS}: cannot page past offset {MAX_RESULTS} "
                          f"(after={after}). Narrow the filters instead.")
    params: list = [t, visible_at_ms]
    where = ["r.type = ?", "r.archived = 0", "r.visible_ms <= ?"]
    groups = body.get("filterGroups") or []
    if not isinstance(groups, list):
        raise SearchError("filterGroups must be a list")
    if len(groups) > MAX_GROUPS:
        raise SearchError(f"Too many filter groups ({len(groups)}); the maximum is {MAX_GROUPS}")
    if sum(len((g or {}).get("filters") or []) for g in groups) > MAX_FILTERS_TOTAL:
        raise SearchError(f"Too many filters; the maximum is {MAX_FILTERS_TOTAL} in total")
    ors = []
    for g in groups:
        filters = (g or {}).get("filters") or []
        if len(filters) > MAX_FILTERS_PER_GROUP:
            raise SearchError(f"Too many filters in a group ({len(filters)}); the maximum is {MAX_FILTERS_PER_GROUP}")
        ands = [_filter_sql(t, f, params) for f in filters]
        if ands:
            ors.append("(" + " AND ".join(ands) + ")")
    if ors:
        where.append("(" + " OR ".join(ors) + ")")
    q = body.get("query")
    if q:
        likes = [f"json_extract(r.props, '$.{p}') LIKE ?" for p in QUERY_PROPS[t]]
        params.extend([f"%{q}%"] * len(likes))
        where.append("(" + " OR ".join(likes) + ")")
    order = ", ".join(_sorts(t, body.get("sorts")))
    wsql = " WHERE " + " AND ".join(where)
    count_sql = "SELECT COUNT(*) FROM records r" + wsql
    take = min(limit, MAX_RESULTS - after)
    sql = f"{_SELECT}{wsql} ORDER BY {order} LIMIT ? OFFSET ?"
    return sql, count_sql, params + [take, after], limit, after
