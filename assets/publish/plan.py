"""What the platform should write: ERP customers and sales orders for closed-won deals.

Reads only validated data (never raw) and the target system itself (the ERP's orders and
customers) — the target is the truth about what already exists."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import pandas as pd
import sqlalchemy as sa

from trueup.connectors.erp_schema import customers as t_customers
from trueup.connectors.erp_schema import sales_orders as t_orders
from trueup.connectors.warehouse import Warehouse

from .ledger import Write
from .money import to_reporting

LIKELY_DUPLICATE_DAYS = 7
LIKELY_DUPLICATE_TOLERANCE = 0.01   # share of the deal amount (and at least one currency unit)


def order_number_for(deal_id: str) -> str:
    # derived from the business id: the same deal can only ever produce the same order number
    return f"SO-8{deal_id}"


def customer_number_for(company_id: str) -> str:
    return f"C8{company_id}"


@dataclass
class Plan:
    customers: list[Write] = field(default_factory=list)
    orders: list[Write] = field(default_factory=list)
    held: list[tuple[Write, str]] = field(default_factory=list)              # human-required, with reason
    awaiting_approval: list[tuple[Write, str]] = field(default_factory=list)
    not_eligible_before_golive: int = 0


def eligible_deals(wh: Warehouse, publish_from: dt.date, through: dt.date) -> pd.DataFrame:
    """Closed-won deals whose current version passed the inbound contract, closed on or after
    go-live and on or before the business day being published."""
    with wh.begin() as conn:
        if not wh.table_columns(conn, "validated", "crm_deals_current"):
            return pd.DataFrame(columns=["id", "amount", "deal_currency_code", "closedate", "company_id"])
        df = wh.read_df(conn, "SELECT id, amount, deal_currency_code, closedate, company_id FROM "
                              "validated.crm_deals_current WHERE dealstage = 'closedwon'")
    close = pd.to_datetime(df["closedate"], utc=True, format="ISO8601").dt.date
    df = df.assign(close_date=close)
    df = df[df["close_date"] <= through]
    df.attrs["before_golive"] = int((df["close_date"] < publish_from).sum())
    return df[df["close_date"] >= publish_from].reset_index(drop=True)


def _companies(wh: Warehouse) -> pd.DataFrame:
    with wh.begin() as conn:
        if not wh.table_columns(conn, "validated", "crm_companies_current"):
            return pd.DataFrame(columns=["id", "name", "country", "erp_customer_number"])
        return wh.read_df(conn, "SELECT id, name, country, erp_customer_number FROM validated.crm_companies_current")


def _golden(wh: Warehouse) -> pd.DataFrame | None:
    with wh.begin() as conn:
        if not wh.table_columns(conn, "marts", "dim_customer"):
            return None
        return wh.read_df(conn, "SELECT crm_company_id, erp_customer_number, match_method FROM marts.dim_customer")


def crosswalk(wh: Warehouse, erp_customers: pd.DataFrame) -> tuple[dict[str, str], set[str]]:
    """CRM company id → ERP customer number, and the companies whose match is ambiguous.
    The golden customer (marts.dim_customer) decides when it exists; before dbt has run, the
    explicit links (customer.crm_company_id, company.erp_customer_number) do."""
    golden = _golden(wh)
    if golden is not None:
        linked = golden.dropna(subset=["crm_company_id", "erp_customer_number"])
        ambiguous = set(golden.loc[golden["match_method"] == "ambiguous", "crm_company_id"].dropna().astype(str))
        return dict(zip(linked["crm_company_id"].astype(str), linked["erp_customer_number"])), ambiguous
    out = dict(zip(erp_customers["crm_company_id"].dropna().astype(str),
                   erp_customers.loc[erp_customers["crm_company_id"].notna(), "customer_number"]))
    known = set(erp_customers["customer_number"])
    comp = _companies(wh)
    for cid, num in zip(comp["id"], comp["erp_customer_number"]):
        if num and num in known:
            out.setdefault(str(cid), num)
    return out, set()


def read_erp(engine) -> tuple[pd.DataFrame, pd.DataFrame]:
    with engine.connect() as conn:
        orders = pd.read_sql(sa.select(t_orders.c.order_number, t_orders.c.customer_number, t_orders.c.crm_deal_id,
                                       t_orders.c.order_date, t_orders.c.total_amount, t_orders.c.currency,
                                       t_orders.c.source), conn, coerce_float=False)
        customers = pd.read_sql(sa.select(t_customers.c.customer_number, t_customers.c.crm_company_id), conn)
    return orders, customers


def build_plan(wh: Warehouse, engine, *, publish_from: dt.date, through: dt.date, reporting_currency: str,
               approval_threshold: float, approved: set[tuple[str, str]],
               released: set[tuple[str, str]] = frozenset()) -> Plan:
    """`approved`: (idempotency key, payload hash) of standing approvals — an approval releases
    the exact payload a person saw, never a changed one."""
    deals = eligible_deals(wh, publish_from, through)
    plan = Plan(not_eligible_before_golive=deals.attrs.get("before_golive", 0))
    orders, customers = read_erp(engine)
    linked_deals = set(orders["crm_deal_id"].dropna().astype(str))
    # in a fixed order (earliest close first): a new customer takes its currency from the company's
    # first deal, and the view's row order varies between runs — a customer write planned by a
    # crashed run must be the same write in the next one, or it stays open in the ledger for ever
    todo = deals[~deals["id"].astype(str).isin(linked_deals)]
    todo = todo.assign(_id=todo["id"].astype(str)).sort_values(["close_date", "_id"], kind="stable").drop(columns="_id")
    if todo.empty:
        return plan
    xwalk, ambiguous = crosswalk(wh, customers)
    companies = _companies(wh).set_index("id")
    manual = orders[orders["crm_deal_id"].isna()].copy()
    manual["amount"] = manual["total_amount"].astype(float)
    manual["order_date"] = pd.to_datetime(manual["order_date"]).dt.date

    new_customers: dict[str, Write] = {}
    for deal in todo.itertuples(index=False):
        company_id = str(deal.company_id)
        amount = float(deal.amount)
        customer = xwalk.get(company_id)
        if company_id in ambiguous:
            plan.held.append((_order_write(deal, None), "ambiguous customer match: a person must link the company"))
            continue
        if customer is None:
            if company_id not in companies.index:
                plan.held.append((_order_write(deal, None), f"CRM company {company_id} not validated"))
                continue
            customer = customer_number_for(company_id)
            if company_id not in new_customers:
                c = companies.loc[company_id]
                new_customers[company_id] = Write(
                    idempotency_key=f"erp-customer:crm-company:{company_id}", target_system="erp",
                    target_object="customers", operation="create", business_key=company_id,
                    payload={"customer_number": customer, "name": c["name"], "country": c["country"],
                             "currency": deal.deal_currency_code, "crm_company_id": company_id,
                             "credit_limit": "50000.00"})
        write = _order_write(deal, customer)
        # a clerk may already have keyed this order by hand without the deal id
        near = manual[(manual["customer_number"] == customer)
                      & ((manual["amount"] - amount).abs() <= max(1.0, LIKELY_DUPLICATE_TOLERANCE * abs(amount)))
                      & (manual["order_date"].map(lambda d: abs((d - deal.close_date).days)) <= LIKELY_DUPLICATE_DAYS)]
        if len(near) and (write.idempotency_key, write.payload_hash) not in released:
            plan.held.append((write, f"possible duplicate of manual order {', '.join(near['order_number'])}"))
            continue
        reporting = to_reporting(amount, deal.deal_currency_code, reporting_currency)
        if reporting > approval_threshold and (write.idempotency_key, write.payload_hash) not in approved:
            plan.awaiting_approval.append((write, f"{reporting:,.2f} {reporting_currency} is above the approval "
                                                  f"threshold {approval_threshold:,.0f}"))
            continue
        plan.orders.append(write)
    plan.customers = list(new_customers.values())
    return plan


def _order_write(deal, customer: str | None) -> Write:
    close = deal.close_date.isoformat()
    return Write(
        idempotency_key=f"erp-order:crm-deal:{deal.id}", target_system="erp", target_object="sales_orders",
        operation="create", business_key=str(deal.id),
        payload={"order_number": order_number_for(str(deal.id)), "customer_number": customer,
                 "crm_deal_id": str(deal.id), "order_date": close, "currency": deal.deal_currency_code,
                 "total_amount": f"{float(deal.amount):.2f}", "status": "open", "source": "integration"})
