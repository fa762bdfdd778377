"""Reverse syncs into the systems of record: ERP customers and orders, CRM write-backs."""
