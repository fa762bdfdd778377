"""The Dagster concurrency pool of the assets that write a business day's data.

Its limit and granularity are the instance's (`concurrency: pools:` in
orchestration/dagster_local.yaml and dagster_production.yaml): limit 1 at *run* granularity,
so the run queue starts no run holding an asset of this pool while another such run is in
progress — whatever days either covers (one day, or a range run such as a single-run backfill
from the UI, which carries no per-day tag the queue's tag limits could compare) and however it
was started (schedule, sensor, UI; a run the CLI executes itself is counted while it runs).
"""

#: raw (ingest), validated and quarantine (gates), the ledger and the systems of record (publish),
#: recon.breaks (reconciliation)
BUSINESS_DAY_WRITES = "business_day_writes"
