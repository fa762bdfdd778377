"""A short human account of what a sandbox world holds."""
from __future__ import annotations

from collections import Counter

from sqlalchemy import func, select

from trueup.connectors.erp_schema import customers, invoices, make_erp_engine, payments, sales_orders
from trueup.connectors.erp_exports import list_exports
from trueup.sandbox.crm.store import CrmStore
from trueup.sandbox.generator.world import WorldPaths, read_defects, read_state


def world_counts(paths: WorldPaths) -> dict[str, dict[str, int]]:
    store = CrmStore(paths.crm_db)
    crm = {t: store.count(t, archived=False) for t in ("companies", "contacts", "deals")}
    crm.update({f"{t} (archived)": store.count(t, archived=True) for t in ("companies", "contacts", "deals")})
    store.close()
    engine = make_erp_engine(paths.erp_url)
    with engine.connect() as conn:
        erp = {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
               for t in (customers, sales_orders, invoices, payments)}
    engine.dispose()
    exports = list_exports(paths.landing_dir)
    return {"crm": crm, "erp": erp,
            "exports": {"days": len(exports), "complete": sum(e.ok for e in exports)}}


def format_report(paths: WorldPaths) -> str:
    state = read_state(paths)
    if state is None:
        return "no sandbox world yet: run `trueup sandbox seed`"
    cfg = state["config"]
    counts = world_counts(paths)
    defects = Counter(d["kind"] for d in read_defects(paths))
    lines = [
        f"World seed {cfg['seed']}, scale {cfg['scale']}: {cfg['start_date']} .. {state['through_date']} "
        f"(go-live {state['golive_date']})",
        "  CRM:     " + ", ".join(f"{v} {k}" for k, v in counts["crm"].items()),
        "  ERP:     " + ", ".join(f"{v} {k}" for k, v in counts["erp"].items()),
        f"  Exports: {counts['exports']['complete']} of {counts['exports']['days']} days complete",
        f"  Defects injected ({sum(defects.values())}, listed in {paths.defects_file}):",
    ]
    lines += [f"    {n:>5}  {kind}" for kind, n in sorted(defects.items(), key=lambda kv: (-kv[1], kv[0]))]
    return "\n".join(lines)
