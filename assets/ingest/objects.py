"""The source objects Trueup lands, and what each must carry (the ingest-level schema)."""
from __future__ import annotations

from dataclasses import dataclass

#: a version's identity in raw: md5 of its content (raw_store.version_hash_sql)
VERSION_HASH = "_version_hash"
LOAD_COLUMNS = ["_run_id", "_partition", "_loaded_at", "_source", VERSION_HASH]


@dataclass(frozen=True)
class SourceObject:
    name: str                 # asset name, e.g. "crm_deals"
    system: str               # crm | erp_db | erp_export
    source_name: str          # CRM object type, ERP table or export file stem
    key: str                  # business key column
    columns: tuple[str, ...]  # columns landed (as text)
    required: tuple[str, ...]  # a batch without these fails (schema drift)
    numeric: tuple[str, ...] = ()   # required columns that must hold decimals
    modified: str = "updated_at"
    has_tombstones: bool = False

    @property
    def raw_table(self) -> str:
        return self.name

    @property
    def current_view(self) -> str:
        return f"{self.name}_current"


CRM_RECORD_COLUMNS = ("id", "created_at", "updated_at", "archived", "archived_at")

CRM_PROPERTIES = {
    "companies": ("name", "domain", "country", "industry", "lifecyclestage", "tax_id", "erp_customer_number",
                  "ar_balance", "ar_overdue_amount", "last_payment_date", "createdate", "hs_lastmodifieddate"),
    "contacts": ("email", "firstname", "lastname", "phone", "associatedcompanyid", "createdate",
                 "lastmodifieddate"),
    "deals": ("dealname", "amount", "deal_currency_code", "dealstage", "pipeline", "closedate",
              "erp_order_number", "createdate", "hs_lastmodifieddate"),
}

CRM_OBJECTS = {
    t: SourceObject(
        name=f"crm_{t}", system="crm", source_name=t, key="id",
        columns=CRM_RECORD_COLUMNS + CRM_PROPERTIES[t] + (("company_id",) if t == "deals" else ()),
        required=("id", "updated_at"), has_tombstones=True,
    )
    for t in CRM_PROPERTIES
}

ERP_DB_OBJECTS = {
    "customers": SourceObject(
        name="erp_customers", system="erp_db", source_name="customers", key="customer_number",
        columns=("customer_number", "name", "tax_id", "country", "currency", "crm_company_id", "credit_limit",
                 "created_at", "updated_at"),
        required=("customer_number", "name", "country", "currency", "updated_at"),
    ),
    "sales_orders": SourceObject(
        name="erp_sales_orders", system="erp_db", source_name="sales_orders", key="order_number",
        columns=("order_number", "customer_number", "crm_deal_id", "order_date", "currency", "total_amount",
                 "status", "source", "created_at", "updated_at"),
        required=("order_number", "customer_number", "order_date", "currency", "total_amount", "updated_at"),
        numeric=("total_amount",),
    ),
}

ERP_EXPORT_OBJECTS = {
    "invoices": SourceObject(
        name="erp_invoices", system="erp_export", source_name="invoices", key="invoice_number",
        columns=("invoice_number", "order_number", "customer_number", "issue_date", "due_date", "currency",
                 "amount", "status", "created_at", "updated_at"),
        required=("invoice_number", "order_number", "customer_number", "issue_date", "due_date", "currency",
                  "amount", "status", "updated_at"),
        numeric=("amount",),
    ),
    "payments": SourceObject(
        name="erp_payments", system="erp_export", source_name="payments", key="payment_id",
        columns=("payment_id", "invoice_number", "amount", "currency", "received_at", "method", "created_at",
                 "updated_at"),
        required=("payment_id", "invoice_number", "amount", "currency", "received_at", "updated_at"),
        numeric=("amount",),
    ),
}

ALL_OBJECTS = {o.name: o for o in (*CRM_OBJECTS.values(), *ERP_DB_OBJECTS.values(), *ERP_EXPORT_OBJECTS.values())}
