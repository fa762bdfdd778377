"""The contracts as Great Expectations suite files (GX 1.x JSON), one per contract in
quality/contracts/gx_suites/<contract>.json, versioned with the contracts: for people who read,
review or diff suites the GX way, or load one into a GX context of their own
(`gx.ExpectationSuite(**json.load(f))`).

The gate builds the same suites in code (quality/gx_suites.py); a file is what `build_suite`
gives, with two differences: the ids GX assigns are left out (they change on every build), and a
referential rule's value set is a suite parameter, `{"$PARAMETER": "<reference>"}`, because the
gate fills it at run time from the warehouse's current keys (quality/references.py).

`python -m trueup.quality.suite_files` rewrites the files; tests/unit/test_suite_files.py fails,
naming this command, while a committed file differs from its contract.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .contracts import CONTRACTS
from .contracts.rules import Contract

SUITES_DIR = Path(__file__).resolve().parent / "contracts" / "gx_suites"


def suite_file(contract: Contract) -> Path:
    return SUITES_DIR / f"{contract.name}.json"


def suite_json(contract: Contract) -> str:
    """The contract's suite as GX JSON text (ids left out, references as suite parameters)."""
    from .gx_suites import GxValidator

    GxValidator()   # GX builds suites inside an active context
    return json.dumps(suite_dict(contract), indent=2, sort_keys=True, default=str) + "\n"


def suite_dict(contract: Contract) -> dict:
    """The suite of the file as a dict, built in the caller's active GX context."""
    from .gx_suites import build_suite

    references = {r.reference: {"$PARAMETER": r.reference} for r in contract.rules if getattr(r, "reference", None)}
    suite = build_suite(contract, references).to_json_dict()
    suite.pop("id", None)
    for expectation in suite.get("expectations", []):
        expectation.pop("id", None)
    return suite


def write_suite_files() -> list[Path]:
    SUITES_DIR.mkdir(exist_ok=True)
    written = []
    for contract in CONTRACTS.values():
        path = suite_file(contract)
        path.write_text(suite_json(contract), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for p in write_suite_files():
        print(p.relative_to(Path.cwd()) if p.is_relative_to(Path.cwd()) else p)
    sys.exit(0)
