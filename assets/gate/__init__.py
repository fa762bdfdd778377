"""Quality gates: raw → validated, one Dagster asset per contract, with a blocking check."""
