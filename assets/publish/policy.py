"""Publishing policy a person may override per run (PublishConfig, the intraday run's config)."""

#: deals above this amount (reporting currency) wait for a person's approval before their order is sent
DEFAULT_APPROVAL_THRESHOLD = 250_000.0
