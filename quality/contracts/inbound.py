"""Inbound contracts: what each source object must satisfy before anything downstream uses it.

Each contract is a Great Expectations suite (see quality/gx_suites.py) named
`<object>.inbound`; its version lives in the suite's meta. Changing a rule without bumping
the version fails tests/unit/test_contracts.py (quality/contracts/versions.json records the
fingerprint of every version).
"""
from __future__ import annotations

from .rules import DECIMAL_RE, EMAIL_RE, ISO_COUNTRIES, ISO_CURRENCIES, Contract, Rule

MAX_AMOUNT = 10_000_000.0
DEAL_STAGES = ("appointmentscheduled", "qualifiedtobuy", "presentationscheduled", "decisionmakerboughtin",
               "contractsent", "closedwon", "closedlost")
CLOSED_WON = ("dealstage", "closedwon")
# a calendar date from 1900 on (rejects "N/A", "31/12/2026", years like 0999 or 1850)
DATE_1900_RE = r"^(19|20)[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"


def _key_rules(key: str, pattern: str | None = None) -> tuple[Rule, ...]:
    rules = [Rule(f"{key}_present", "not_null", key, description="the business key is present"),
             Rule(f"{key}_unique", "unique", key, description="one row per business key in a batch")]
    if pattern:
        rules.append(Rule(f"{key}_format", "regex", key, pattern=pattern, description="business key format"))
    return tuple(rules)


def _money(col: str, minimum: float = 0.0) -> tuple[Rule, ...]:
    return (Rule(f"{col}_is_decimal", "decimal", col, pattern=DECIMAL_RE, description="a decimal with ≤ 2 places"),
            Rule(f"{col}_plausible", "between", col, min_value=minimum, max_value=MAX_AMOUNT,
                 description=f"between {minimum:g} and {MAX_AMOUNT:,.0f}"))


CRM_COMPANIES = Contract(
    name="crm_companies.inbound", object="crm_companies", direction="inbound", version="1.0.0", key="id",
    rules=(*_key_rules("id", r"^[0-9]+$"),
           Rule("name_present", "not_null", "name"),
           Rule("country_iso", "in_set", "country", values=ISO_COUNTRIES, description="ISO-3166 alpha-2"),
           Rule("ar_balance_is_decimal", "decimal", "ar_balance", pattern=DECIMAL_RE),
           Rule("ar_overdue_is_decimal", "decimal", "ar_overdue_amount", pattern=DECIMAL_RE)),
)

CRM_CONTACTS = Contract(
    name="crm_contacts.inbound", object="crm_contacts", direction="inbound", version="1.0.0", key="id",
    rules=(*_key_rules("id", r"^[0-9]+$"),
           Rule("email_present", "not_null", "email"),
           Rule("email_format", "regex", "email", pattern=EMAIL_RE, description="a plain address"),
           Rule("email_unique", "unique", "email", description="one contact per email"),
           Rule("company_exists", "in_reference", "associatedcompanyid", reference="crm_company_ids",
                description="the associated company exists in the CRM")),
    pii_columns=("email", "firstname", "lastname", "phone"),
)

CRM_DEALS = Contract(
    name="crm_deals.inbound", object="crm_deals", direction="inbound", version="1.0.0", key="id",
    rules=(*_key_rules("id", r"^[0-9]+$"),
           Rule("dealname_present", "not_null", "dealname"),
           Rule("dealstage_known", "in_set", "dealstage", values=DEAL_STAGES),
           *_money("amount"),
           Rule("currency_iso", "in_set", "deal_currency_code", values=ISO_CURRENCIES, description="ISO-4217"),
           Rule("closedate_valid", "regex", "closedate", pattern=DATE_1900_RE),
           Rule("won_has_amount", "not_null", "amount", when=CLOSED_WON),
           Rule("won_has_currency", "not_null", "deal_currency_code", when=CLOSED_WON),
           Rule("won_has_company", "not_null", "company_id", when=CLOSED_WON),
           Rule("company_exists", "in_reference", "company_id", reference="crm_company_ids")),
    money_column="amount",
)

ERP_CUSTOMERS = Contract(
    name="erp_customers.inbound", object="erp_customers", direction="inbound", version="1.0.0",
    key="customer_number",
    rules=(*_key_rules("customer_number", r"^C[0-9]+$"),
           Rule("name_present", "not_null", "name"),
           Rule("country_present", "not_null", "country"),
           Rule("country_iso", "in_set", "country", values=ISO_COUNTRIES),
           Rule("currency_iso", "in_set", "currency", values=ISO_CURRENCIES),
           Rule("credit_limit_is_decimal", "decimal", "credit_limit", pattern=DECIMAL_RE)),
)

ERP_SALES_ORDERS = Contract(
    name="erp_sales_orders.inbound", object="erp_sales_orders", direction="inbound", version="1.0.0",
    key="order_number",
    rules=(*_key_rules("order_number", r"^SO-[0-9]+$"),
           Rule("customer_exists", "in_reference", "customer_number", reference="erp_customer_numbers"),
           Rule("crm_deal_id_unique", "unique", "crm_deal_id", description="one order per CRM deal"),
           Rule("order_date_valid", "regex", "order_date", pattern=DATE_1900_RE),
           Rule("total_present", "not_null", "total_amount"),
           *_money("total_amount"),
           Rule("currency_iso", "in_set", "currency", values=ISO_CURRENCIES),
           Rule("status_known", "in_set", "status", values=("open", "fulfilled", "cancelled")),
           Rule("source_known", "in_set", "source", values=("manual", "integration"))),
    money_column="total_amount",
)

ERP_INVOICES = Contract(
    name="erp_invoices.inbound", object="erp_invoices", direction="inbound", version="1.0.0",
    key="invoice_number",
    rules=(*_key_rules("invoice_number", r"^INV-[0-9]+$"),
           Rule("order_exists", "in_reference", "order_number", reference="erp_order_numbers"),
           Rule("customer_exists", "in_reference", "customer_number", reference="erp_customer_numbers"),
           Rule("issue_date_valid", "regex", "issue_date", pattern=DATE_1900_RE),
           Rule("due_date_valid", "regex", "due_date", pattern=DATE_1900_RE),
           Rule("due_after_issue", "a_gte_b", "due_date", other="issue_date", description="due ≥ issue date"),
           Rule("issued_not_in_future", "a_gte_b", "created_at", other="issue_date",
                description="not issued after it was recorded"),
           Rule("amount_present", "not_null", "amount"),
           *_money("amount"),
           Rule("currency_iso", "in_set", "currency", values=ISO_CURRENCIES),
           Rule("status_known", "in_set", "status", values=("open", "paid", "void"))),
    money_column="amount",
)

ERP_PAYMENTS = Contract(
    name="erp_payments.inbound", object="erp_payments", direction="inbound", version="1.0.0",
    key="payment_id",
    rules=(*_key_rules("payment_id", r"^PAY-[0-9]+$"),
           Rule("invoice_exists", "in_reference", "invoice_number", reference="erp_invoice_numbers"),
           Rule("amount_present", "not_null", "amount"),
           *_money("amount", minimum=0.01),
           Rule("currency_iso", "in_set", "currency", values=ISO_CURRENCIES),
           Rule("received_valid", "regex", "received_at", pattern=DATE_1900_RE),
           Rule("received_not_in_future", "a_gte_b", "created_at", other="received_at"),
           Rule("method_known", "in_set", "method", values=("wire", "card", "ach", "check"))),
    money_column="amount",
)

INBOUND = {c.object: c for c in (CRM_COMPANIES, CRM_CONTACTS, CRM_DEALS, ERP_CUSTOMERS, ERP_SALES_ORDERS,
                                 ERP_INVOICES, ERP_PAYMENTS)}
