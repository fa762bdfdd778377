"""Trueup benchmarks (``python -m bench ingest …``). Speed targets live here as ratios
against a baseline measured in the same run, never as timed assertions in tests."""
