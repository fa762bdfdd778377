"""Reconciliation: the five comparisons (README: What lands where), run as set-based SQL in the
warehouse, persisted statefully in recon.breaks / recon.runs (see README.md in this folder)."""
