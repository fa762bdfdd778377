"""Reconciliation: the five comparisons of spec/warehouse.md, run as set-based SQL in the
warehouse, persisted statefully in recon.breaks / recon.runs (see README.md in this folder)."""
