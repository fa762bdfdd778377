"""Outbound contracts: what a write must satisfy before it is sent to a system of record."""
from __future__ import annotations

from .inbound import DATE_1900_RE, MAX_AMOUNT
from .rules import DECIMAL_RE, ISO_COUNTRIES, ISO_CURRENCIES, Contract, Rule

ERP_SALES_ORDERS_OUT = Contract(
    name="erp_sales_orders.outbound", object="erp_sales_orders", direction="outbound", version="1.0.0",
    key="crm_deal_id",
    rules=(Rule("deal_present", "not_null", "crm_deal_id"),
           Rule("one_order_per_deal", "unique", "crm_deal_id"),
           Rule("order_number_format", "regex", "order_number", pattern=r"^SO-[0-9]+$"),
           Rule("customer_present", "not_null", "customer_number"),
           Rule("order_date_valid", "regex", "order_date", pattern=DATE_1900_RE),
           Rule("currency_iso", "in_set", "currency", values=ISO_CURRENCIES),
           Rule("total_is_decimal", "decimal", "total_amount", pattern=DECIMAL_RE),
           Rule("total_plausible", "between", "total_amount", min_value=0.01, max_value=MAX_AMOUNT),
           Rule("source_is_integration", "in_set", "source", values=("integration",))),
    money_column="total_amount",
)

ERP_CUSTOMERS_OUT = Contract(
    name="erp_customers.outbound", object="erp_customers", direction="outbound", version="1.0.0",
    key="crm_company_id",
    rules=(Rule("company_present", "not_null", "crm_company_id"),
           Rule("one_customer_per_company", "unique", "crm_company_id"),
           Rule("customer_number_format", "regex", "customer_number", pattern=r"^C[0-9]+$"),
           Rule("name_present", "not_null", "name"),
           Rule("country_iso", "in_set", "country", values=ISO_COUNTRIES),
           Rule("country_present", "not_null", "country"),
           Rule("currency_iso", "in_set", "currency", values=ISO_CURRENCIES)),
)

OUTBOUND = {c.object: c for c in (ERP_SALES_ORDERS_OUT, ERP_CUSTOMERS_OUT)}
