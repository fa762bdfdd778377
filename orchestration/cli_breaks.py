"""`trueup breaks list` and `trueup breaks show ID`: the open reconciliation findings as a finance
person works them — what, where, how much money, since when, and who fixes it.

Read from recon.breaks (assets/reconcile/store.py): each open finding has a category (`break`:
money at risk; `pending`: waits for a person; `timing`: not due yet), its record keys, its
amount, the business date the problem began and the system where it is fixed. The total money
at risk is counted once per root cause (recon.breaks_counted), as the run summaries count it.
"""
from __future__ import annotations

import argparse
import json

from trueup.orchestration.commands import CliError
from trueup.orchestration.config import Settings

#: the columns read for a break, in the order `show` prints them
COLUMNS = ("break_id", "recon_name", "break_type", "category", "status", "business_key", "left_system",
           "right_system", "left_amount", "right_amount", "currency", "amount_at_risk", "amount_pending",
           "reporting_currency", "problem_date", "last_seen_as_of", "first_seen_at", "last_seen_at", "times_seen",
           "owner_system", "reason", "details", "chain_key", "resolved_at")
#: who acts on a finding, by the system where it is fixed (rules/__init__.py: owner_system)
OWNERS = {"crm": "CRM (sales ops)", "erp": "ERP (finance)", "trueup": "Trueup operator"}


def amount_at_least(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not 0 <= x < float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be 0 or more")
    return x


def add_breaks_arguments(listing, show) -> None:
    listing.add_argument("--recon", default=None, help="one reconciliation, e.g. deals_vs_orders")
    listing.add_argument("--type", default=None, dest="break_type", help="one break type, e.g. missing_in_erp")
    listing.add_argument("--min-amount", type=amount_at_least, default=None,
                         help="only findings of at least this amount (reporting currency)")
    listing.add_argument("--json", action="store_true", help="one JSON object: the breaks and the totals")
    show.add_argument("id", help="break id (see `trueup breaks list`); a unique prefix will do")
    show.add_argument("--json", action="store_true", help="the break as one JSON object")


# -- list --------------------------------------------------------------------------------
def cmd_breaks_list(args, settings: Settings) -> None:
    from trueup.orchestration.warehouse_session import warehouse_session

    with warehouse_session(settings.warehouse_url) as wh:
        if not _reconciled(wh):
            raise CliError("nothing reconciled yet (no recon.breaks): run `trueup nightly` or `trueup backfill` first")
        _check_names(wh, args.recon, args.break_type)
        where, params = ["status = 'open'"], {}
        if args.recon:
            where.append("recon_name = :recon")
            params["recon"] = args.recon
        if args.break_type:
            where.append("break_type = :type")
            params["type"] = args.break_type
        if args.min_amount is not None:
            where.append("coalesce(amount_at_risk, 0) + coalesce(amount_pending, 0) >= :min")
            params["min"] = args.min_amount
        cond = " AND ".join(where)
        df = wh.query_df(f"SELECT {', '.join(COLUMNS)} FROM recon.breaks WHERE {cond} "
                         "ORDER BY coalesce(amount_at_risk, 0) + coalesce(amount_pending, 0) DESC, break_id", params)
        risk = wh.query_df(f"SELECT coalesce(sum(counted_at_risk), 0) AS r FROM recon.breaks_counted WHERE {cond}",
                           params).iat[0, 0]
    rows = [_row(r) for r in df.to_dict("records")]
    cur = settings.reporting_currency
    totals = {c: sum(r["category"] == c for r in rows) for c in ("break", "pending", "timing")}
    pending = round(sum(r["amount"] for r in rows if r["category"] != "break"), 2)
    if args.json:
        print(json.dumps({"breaks": rows, "count": len(rows), "by_category": totals,
                          "money_at_risk": round(float(risk), 2), "amount_pending": pending, "currency": cur},
                         default=str))
        return
    if not rows:
        print("no open breaks" + (" matching the filters" if len(where) > 1 else ""))
        return
    print(_table(rows, cur))
    print(f"{len(rows)} open: {_n(totals['break'], 'break')} with {cur} {float(risk):,.2f} at risk (counted once "
          f"per root cause); {totals['pending']} waiting for a person and {totals['timing']} not due yet "
          f"({cur} {pending:,.2f}); `trueup breaks show ID` for one")


def _table(rows: list[dict], cur: str) -> str:
    heads = ("id", "recon", "type", "category", "record keys", f"amount {cur}", "age", "owner", "details")
    cells = [(r["id"], r["recon"], r["type"], r["category"], r["record_keys"], f"{r['amount']:,.2f}",
              "-" if r["age_days"] is None else f"{r['age_days']}d", r["owner"] or "-", r["details"] or "")
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads[:-1])]
    right = {5, 6}   # amounts and ages line up on the right

    def line(values) -> str:
        parts = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))]
        return "  ".join(parts + [values[-1]]).rstrip()

    return "\n".join([line(heads), line(["-" * w for w in widths] + [""])] + [line(c) for c in cells])


# -- show --------------------------------------------------------------------------------
def cmd_breaks_show(args, settings: Settings) -> None:
    from trueup.orchestration.warehouse_session import warehouse_session

    key = args.id.strip().lower()
    with warehouse_session(settings.warehouse_url) as wh:
        if not _reconciled(wh):
            raise CliError("nothing reconciled yet (no recon.breaks): run `trueup nightly` or `trueup backfill` first")
        df = wh.query_df(f"SELECT {', '.join(COLUMNS)} FROM recon.breaks WHERE break_id = :k "
                         "OR (length(:k) >= 6 AND break_id LIKE :p) ORDER BY break_id", {"k": key, "p": key + "%"})
    exact = df[df["break_id"] == key]
    df = exact if len(exact) else df
    if df.empty:
        raise CliError(f"no break {args.id!r}: `trueup breaks list` shows the open ones with their ids")
    if len(df) > 1:
        raise CliError(f"{args.id!r} is the start of {len(df)} break ids ({', '.join(df['break_id'][:5])}, ...): "
                       f"give more of it")
    rec = df.to_dict("records")[0]
    row = _row(rec)
    if args.json:
        print(json.dumps({**row, "raw": {k: _plain(v) for k, v in rec.items()}}, default=str))
        return
    cur = rec.get("reporting_currency") or settings.reporting_currency
    fields = [
        ("break", row["id"]), ("status", rec["status"]), ("reconciliation", row["recon"]),
        ("type", row["type"]), ("category", row["category"]), ("record keys", row["record_keys"]),
        ("amounts", f"{rec['left_system']} {_money(rec['left_amount'])} / {rec['right_system']} "
                    f"{_money(rec['right_amount'])} {rec['currency'] or ''}".strip()),
        ("money at risk" if row["category"] == "break" else "amount pending", f"{cur} {row['amount']:,.2f}"),
        ("problem since", f"{row['problem_date'] or '-'}" + ("" if row["age_days"] is None else
                                                            f" ({row['age_days']} days before {row['as_of']})")),
        ("seen", f"{_plain(rec['times_seen'])} times, first {_plain(rec['first_seen_at'])}, "
                 f"last {_plain(rec['last_seen_at'])}"),
        ("suggested owner", row["owner"] or "-"), ("reason", rec["reason"] or "-"),
        ("root cause", rec["chain_key"] or "-"), ("details", row["details_raw"] or "-"),
    ]
    if rec["status"] != "open":
        fields.insert(2, ("resolved at", _plain(rec["resolved_at"])))
    w = max(len(k) for k, _ in fields)
    print("\n".join(f"{k + ':':<{w + 1}} {v}" for k, v in fields))


# -- shared ------------------------------------------------------------------------------
def _reconciled(wh) -> bool:
    return bool(wh.query_df("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'recon' "
                            "AND table_name = 'breaks'").iat[0, 0])


def _check_names(wh, recon: str | None, break_type: str | None) -> None:
    """A name that is not a reconciliation or a break type is an error naming the valid ones,
    never an empty list. Reconciliations come from the code; break types from what the
    reconciliations have recorded (open or resolved)."""
    from trueup.assets.reconcile.engine import RECON_NAMES

    if recon is not None and recon not in RECON_NAMES:
        raise CliError(f"unknown reconciliation {recon!r}; valid: {', '.join(RECON_NAMES)}")
    if break_type is not None:
        types = sorted(wh.query_df("SELECT DISTINCT break_type FROM recon.breaks")["break_type"].dropna())
        if break_type not in types:
            raise CliError(f"unknown break type {break_type!r}; recorded types: {', '.join(types) or 'none yet'}")


def _row(rec: dict) -> dict:
    """One finding as a person reads it (and as `--json` gives it)."""
    category = rec.get("category") or "break"
    amount = _num(rec.get("amount_at_risk")) if category == "break" else _num(rec.get("amount_pending"))
    problem, as_of = _day(rec.get("problem_date")), _day(rec.get("last_seen_as_of"))
    left, right = rec.get("left_system"), rec.get("right_system")
    return {
        "id": rec["break_id"], "recon": rec["recon_name"], "type": rec["break_type"], "category": category,
        "status": rec.get("status"),
        "record_keys": rec["business_key"], "systems": f"{left} / {right}" if left and right else None,
        "amount": amount,
        "currency": rec.get("reporting_currency"), "problem_date": problem, "as_of": as_of,
        # age as of the business day the reconciliation last saw it: the platform's "now"
        "age_days": (as_of - problem).days if problem and as_of else None,
        "owner_system": rec.get("owner_system"), "owner": OWNERS.get(rec.get("owner_system"), rec.get("owner_system")),
        "details": rec.get("reason") or _short(rec.get("details")), "details_raw": rec.get("details"),
    }


def _n(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _num(v) -> float:
    return 0.0 if v is None or v != v else round(float(v), 2)


def _money(v) -> str:
    return "-" if v is None or v != v else f"{float(v):,.2f}"


def _day(v):
    import datetime as dt

    import pandas as pd

    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    return v if type(v) is dt.date else pd.Timestamp(v).date()


def _plain(v):
    import pandas as pd

    if v is None or (not isinstance(v, (str, list, dict)) and pd.isna(v)):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat(sep=" ", timespec="seconds") if hasattr(v, "hour") else v.isoformat()
    return v.item() if hasattr(v, "item") else v


def _short(details, limit: int = 80) -> str:
    if not details:
        return ""
    text = str(details).replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."
