"""A valid row of each inbound contract, for tests that change one field and see the gate's verdict."""

GOOD = {
    "crm_deals": {"id": "101", "dealname": "Deal 101", "dealstage": "closedwon", "amount": "1200.50",
                  "deal_currency_code": "EUR", "closedate": "2026-10-01T10:00:00.000Z", "company_id": "7",
                  "pipeline": "default", "updated_at": "2026-10-01T10:00:00.000Z", "archived": "false"},
    "crm_contacts": {"id": "201", "email": "ana.smith@acme.example", "firstname": "Ana", "lastname": "Smith",
                     "phone": "+1-555-1234567", "associatedcompanyid": "7", "updated_at": "2026-10-01T10:00:00Z",
                     "archived": "false"},
    "erp_invoices": {"invoice_number": "INV-1001", "order_number": "SO-1001", "customer_number": "C1001",
                     "issue_date": "2026-10-01", "due_date": "2026-10-31", "currency": "USD", "amount": "99.90",
                     "status": "open", "created_at": "2026-10-01T09:00:00.000000Z",
                     "updated_at": "2026-10-01T09:00:00.000000Z"},
    "erp_payments": {"payment_id": "PAY-1001", "invoice_number": "INV-1001", "amount": "99.90", "currency": "USD",
                     "received_at": "2026-10-02T09:00:00.000000Z", "method": "wire",
                     "created_at": "2026-10-02T09:00:00.000000Z", "updated_at": "2026-10-02T09:00:00.000000Z"},
    "erp_sales_orders": {"order_number": "SO-1001", "customer_number": "C1001", "crm_deal_id": "101",
                         "order_date": "2026-10-01", "currency": "USD", "total_amount": "1200.50", "status": "open",
                         "source": "manual", "created_at": "2026-10-01T09:00:00.000000Z",
                         "updated_at": "2026-10-01T09:00:00.000000Z"},
}
