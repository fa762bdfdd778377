"""dbt exposures name what reads the marts outside dbt; each declares every table its reader's SQL
queries (the README's analyst questions, the run summary's SQL in orchestration/run_report.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TABLE = re.compile(r"\bFROM\s+(marts|recon|quality|ops)\.(\w+)", re.I)


@pytest.fixture(scope="module")
def declared() -> dict[str, set[str]]:
    manifest = json.loads((ROOT / "dbt_project" / "target" / "manifest.json").read_text())
    nodes = {**manifest["nodes"], **manifest["sources"]}

    def relation(uid: str) -> str:
        n = nodes[uid]
        return f"{n['schema']}.{n.get('identifier') or n.get('alias') or n['name']}".lower()

    return {e["name"]: {relation(u) for u in e["depends_on"]["nodes"]} for e in manifest["exposures"].values()}


def _read(sql_text: str) -> set[str]:
    return {f"{s}.{t}".lower() for s, t in TABLE.findall(sql_text)}


def test_the_analyst_questions_exposure_declares_what_the_readme_queries(declared):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("### Three analyst questions", 1)[1].split("```", 2)[1]
    queried = _read(block)
    assert queried and queried <= declared["analyst_questions"], queried - declared["analyst_questions"]


def test_the_run_summary_exposure_declares_what_the_summary_queries(declared):
    queried = _read((ROOT / "orchestration" / "run_report.py").read_text())
    assert {"marts.roi_summary", "recon.breaks_counted"} <= queried
    assert queried <= declared["run_summary"], queried - declared["run_summary"]
