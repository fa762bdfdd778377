"""Deterministic, vectorised generator of a company's CRM and ERP history (with known defects)."""
