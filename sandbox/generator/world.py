"""Seed a sandbox world and advance it one business day at a time.

A day is applied to the three source systems in the order a real company produces it:
CRM activity (new records, stage changes, closes, deletes, one bulk update), clerks keying
ERP customers and orders, the billing run, then the ERP's nightly export of the day.
The defect manifest lists every injected defect by kind and business key.
"""
from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select

from trueup.connectors.erp_schema import create_erp_schema, customers, make_erp_engine, sales_orders
from trueup.sandbox.crm.store import CrmStore
from trueup.sandbox.erp.exports import export_rows_from_db, write_export
from trueup.sandbox.generator.world_settings import clear_world_settings, write_world_settings

from . import crm_versions
from .billing import _records, run_billing_day
from .config import WorldConfig
from .history import DAY_MS, History, _uniforms, day_start_ms, generate_history


@dataclass(frozen=True)
class WorldPaths:
    """Where a world lives. The ERP may be any SQLAlchemy URL (SQLite file or PostgreSQL).
    The world's dates go to the settings file of the TRUEUP_HOME above `root` (generator/world_settings.py)."""

    root: Path            # sandbox state folder, $TRUEUP_HOME/sandbox (world.json, defects.json, crm.sqlite)
    erp_url: str
    landing_dir: Path

    @property
    def crm_db(self) -> Path:
        return self.root / "crm.sqlite"

    @property
    def world_file(self) -> Path:
        return self.root / "world.json"

    @property
    def defects_file(self) -> Path:
        return self.root / "defects.json"


@dataclass
class DaySummary:
    date: dt.date
    crm_changes: dict[str, int]
    erp_inserts: dict[str, int]
    export_rows: dict[str, int]


def seed_world(paths: WorldPaths, cfg: WorldConfig, days: int | None = None, reset: bool = True) -> list[DaySummary]:
    """Create the world from nothing and apply its first `days` days (default: cfg.days)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    _ensure_sqlite_dir(paths.erp_url)
    if reset:
        reset_world(paths)
    engine = make_erp_engine(paths.erp_url)
    create_erp_schema(engine)
    n = cfg.days if days is None else days
    history = generate_history(cfg, n - 1)
    summaries = [_apply_day(paths, cfg, history, engine, d) for d in range(n)]
    engine.dispose()
    return summaries


def advance_world(paths: WorldPaths, days: int = 1) -> list[DaySummary]:
    """Apply the next `days` business days to an existing world."""
    state = read_state(paths)
    if state is None:
        raise WorldNotSeeded(f"no sandbox world at {paths.root}: run `trueup sandbox seed` first")
    cfg = WorldConfig.from_json(state["config"])
    first = int(state["through_day"]) + 1
    engine = make_erp_engine(paths.erp_url)
    history = generate_history(cfg, first + days - 1)
    out = [_apply_day(paths, cfg, history, engine, d) for d in range(first, first + days)]
    engine.dispose()
    return out


class WorldNotSeeded(RuntimeError):
    pass


def _ensure_sqlite_dir(url: str) -> None:
    """SQLite cannot create the folder of its database file."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        Path(u.database).parent.mkdir(parents=True, exist_ok=True)


def reset_world(paths: WorldPaths) -> None:
    """Forget the world: CRM store, ERP tables' contents, exports, manifest."""
    for f in (paths.crm_db, paths.world_file, paths.defects_file):
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(f) + suffix)
            if p.exists():
                p.unlink()
    clear_world_settings(paths)
    exports = paths.landing_dir / "exports"
    if exports.exists():
        shutil.rmtree(exports)
    engine = make_erp_engine(paths.erp_url)
    from trueup.connectors.erp_schema import metadata
    metadata.drop_all(engine, checkfirst=True)
    engine.dispose()


def read_state(paths: WorldPaths) -> dict | None:
    if not paths.world_file.exists():
        return None
    return json.loads(paths.world_file.read_text())


def read_defects(paths: WorldPaths) -> list[dict]:
    if not paths.defects_file.exists():
        return []
    return json.loads(paths.defects_file.read_text())["defects"]


def _apply_day(paths: WorldPaths, cfg: WorldConfig, h: History, engine: Engine, d: int) -> DaySummary:
    day = cfg.start_date + dt.timedelta(days=d)
    start, end = day_start_ms(cfg, d), day_start_ms(cfg, d) + DAY_MS
    store = CrmStore(paths.crm_db)
    crm = _apply_crm(store, h, start, end)
    erp = _apply_manual_erp(engine, h, start, end)
    billing_defects = run_billing_day(cfg, engine, day)
    export_rows, export_defects = _write_day_export(paths, cfg, engine, day, d)
    store.close()

    defects = _merge_defects(read_defects(paths), billing_defects + export_defects + _history_defects(cfg, h, day))
    paths.defects_file.write_text(json.dumps({"through": day.isoformat(), "defects": defects}, indent=1))
    paths.world_file.write_text(json.dumps({
        "config": cfg.to_json(), "through_day": d, "through_date": day.isoformat(),
        "start_date": cfg.start_date.isoformat(), "days": cfg.days, "golive_date": cfg.golive.isoformat(),
    }, indent=1))
    write_world_settings(paths, cfg, day)
    return DaySummary(day, crm, erp, export_rows)


def _apply_crm(store: CrmStore, h: History, start: int, end: int) -> dict[str, int]:
    deals = crm_versions.deal_versions(h, start, end)
    general, writeback = crm_versions.company_versions(h, start, end)
    contacts = crm_versions.contact_versions(h, start, end)
    store.load_records("companies", general)
    if len(writeback):
        store.load_records("companies", writeback)
    store.load_records("contacts", contacts)
    store.load_records("deals", deals)
    return {"companies": len(general), "contacts": len(contacts), "deals": len(deals)}


def _apply_manual_erp(engine: Engine, h: History, start: int, end: int) -> dict[str, int]:
    """Clerks key the customers and orders whose time falls in [start, end)."""
    cust = h.customers[(h.customers.created_ms >= start) & (h.customers.created_ms < end)]
    orders = h.orders[(h.orders.created_ms >= start) & (h.orders.created_ms < end)]
    with engine.begin() as conn:
        known = pd.read_sql(select(customers.c.customer_number, customers.c.crm_company_id), conn)
        # a clerk looks the company up first: a customer linked to it (the platform may have
        # created one after go-live) is reused rather than keyed twice
        has_link = known["crm_company_id"].notna()
        linked = dict(zip(known.loc[has_link, "crm_company_id"], known.loc[has_link, "customer_number"]))
        cust = cust[~cust["company_id"].astype(str).isin(linked) & ~cust["customer_number"].isin(known["customer_number"])]
        if len(cust):
            created = pd.to_datetime(cust["created_ms"], unit="ms")
            conn.execute(customers.insert(), _records(pd.DataFrame({
                "customer_number": cust["customer_number"], "name": cust["name"], "tax_id": cust["tax_id"],
                "country": cust["country"], "currency": cust["currency"], "crm_company_id": cust["crm_company_id"],
                "credit_limit": "50000.00", "created_at": created, "updated_at": created,
            }).replace({np.nan: None})))
        if len(orders):
            mapped = orders["company_id"].astype(str).map(linked).astype(object)
            number = mapped.where(mapped.notna(), orders["customer_number"])
            created = pd.to_datetime(orders["created_ms"], unit="ms")
            conn.execute(sales_orders.insert(), _records(pd.DataFrame({
                "order_number": orders["order_number"], "customer_number": number,
                "crm_deal_id": orders["crm_deal_id"], "order_date": created.dt.date, "currency": orders["currency"],
                "total_amount": np.char.mod("%.2f", orders["total_amount"].to_numpy()), "status": "open",
                "source": "manual", "created_at": created, "updated_at": created,
            }).replace({np.nan: None})))
    return {"customers": len(cust), "sales_orders": len(orders)}


def _write_day_export(paths: WorldPaths, cfg: WorldConfig, engine: Engine, day: dt.date, d: int):
    inv, pay = export_rows_from_db(engine, day)
    defects: list[dict] = []
    if _uniforms(cfg.seed + 5, np.array([d]), 1)[0, 0] < cfg.rate("orphan_payment"):
        # the ERP's export job emits a payment whose invoice does not exist
        ghost = f"INV-9{day:%Y%m%d}1"
        row = {"payment_id": f"PAY-9{day:%Y%m%d}11", "invoice_number": ghost, "amount": "125.00",
               "currency": "USD", "received_at": pd.Timestamp(day) + pd.Timedelta(hours=12),
               "method": "wire", "created_at": pd.Timestamp(day) + pd.Timedelta(hours=12),
               "updated_at": pd.Timestamp(day) + pd.Timedelta(hours=12)}
        pay = pd.concat([pay, pd.DataFrame([row])], ignore_index=True)
        defects.append({"kind": "orphan_payment", "object": "payment", "business_key": row["payment_id"],
                        "day": day.isoformat(), "details": {"invoice_number": ghost}})
    drift = cfg.drift_days.get(d)
    if drift == "renamed_column":
        inv = inv.rename(columns={"amount": "invoice_amount"})
        defects.append({"kind": "schema_drift", "object": "invoices", "business_key": f"invoices.csv@{day}",
                        "day": day.isoformat(), "details": {"change": "renamed amount -> invoice_amount"}})
    elif drift == "retyped_column" and len(inv):  # a type change shows only in rows
        inv = inv.assign(amount=inv["amount"].map(lambda v: f"{float(v):.2f}".replace(".", ",")))
        defects.append({"kind": "schema_drift", "object": "invoices", "business_key": f"invoices.csv@{day}",
                        "day": day.isoformat(), "details": {"change": "amount written with a decimal comma"}})
    generated_at = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(1, 0), tzinfo=dt.timezone.utc)
    write_export(paths.landing_dir, day, inv, pay, generated_at=generated_at, strict=drift is None)
    return {"invoices": len(inv), "payments": len(pay)}, defects


def _history_defects(cfg: WorldConfig, h: History, through: dt.date) -> list[dict]:
    """Defects decided at generation time that are observable by the end of `through`."""
    end = day_start_ms(cfg, (through - cfg.start_date).days) + DAY_MS
    out: list[dict] = []

    def add(kind, obj, keys, at_ms, details=None):
        for i, (k, t) in enumerate(zip(keys, at_ms)):
            if t < end:
                day = pd.Timestamp(int(t), unit="ms").date().isoformat()
                out.append({"kind": kind, "object": obj, "business_key": str(k), "day": day,
                            "details": details[i] if details else {}})

    dl = h.deals
    for kind in ("missing_amount", "missing_company"):
        rows = dl[dl.defect == kind]
        add(kind, "deal", rows["id"], rows["close_ms"])
    for kind in ("negative_amount", "unknown_currency"):
        rows = dl[dl.defect == kind]
        add(kind, "deal", rows["id"], rows["created_ms"])
    rows = dl[dl.defect == "deleted_deal"]
    add("deleted_deal", "deal", rows["id"], rows["deleted_ms"])
    ct = h.contacts
    for kind in ("malformed_email", "orphan_contact"):
        rows = ct[ct.defect == kind]
        add(kind, "contact", rows["id"], rows["created_ms"])
    rows = ct[ct.defect == "duplicate_contact"]
    add("duplicate_contact", "contact", rows["id"], rows["created_ms"],
        [{"duplicate_of": str(x)} for x in rows["duplicate_of"]])
    rows = ct[ct.defect == "deleted_contact"]
    add("deleted_contact", "contact", rows["id"], rows["deleted_ms"])
    od = h.orders
    for kind in ("amount_mismatch", "currency_mismatch", "manual_order_after_golive", "duplicate_order"):
        rows = od[od.stray] if kind == "manual_order_after_golive" else od[od.defect == kind]
        add(kind, "deal", rows["deal_id"], rows["created_ms"],
            [{"order_number": o} for o in rows["order_number"]])
    rows = od[od.unlinked & (od.defect != "duplicate_order")]
    add("unlinked_manual_order", "deal", rows["deal_id"], rows["created_ms"],
        [{"order_number": o} for o in rows["order_number"]])
    mo = h.missing_orders
    add("missing_order", "deal", mo["id"], mo["close_ms"])
    cu = h.customers
    for kind in ("customer_name_mismatch", "customer_country_mismatch"):
        rows = cu[cu.country_mismatch] if kind == "customer_country_mismatch" else cu[cu.defect == kind]
        add(kind, "company", rows["company_id"], rows["created_ms"],
            [{"customer_number": c} for c in rows["customer_number"]])
    return out


def _merge_defects(old: list[dict], new: list[dict]) -> list[dict]:
    """Union by (kind, business_key), keeping the first sighting."""
    seen = {(x["kind"], x["business_key"]) for x in old}
    merged = list(old)
    for x in new:
        key = (x["kind"], x["business_key"])
        if key not in seen:
            seen.add(key)
            merged.append(x)
    return merged


def reexport_day(paths: WorldPaths, day: dt.date) -> Path:
    """The ERP team re-runs one day's export, correctly this time (fixes drift or corruption)."""
    engine = make_erp_engine(paths.erp_url)
    inv, pay = export_rows_from_db(engine, day)
    engine.dispose()
    return write_export(paths.landing_dir, day, inv, pay)
