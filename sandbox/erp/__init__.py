"""Sandbox ERP: the simulated system of record and its nightly file exports."""
from trueup.sandbox.erp.exports import export_rows_from_db, write_export

__all__ = ["write_export", "export_rows_from_db"]
