"""Data contracts (Great Expectations suites), the gates that enforce them, and the quarantine."""
