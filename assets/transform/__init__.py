"""The dbt layer: staging, intermediate and marts models over the validated objects."""
