"""The code location's public surface — asset keys with their group and dependencies, asset checks,
jobs, schedules, sensors — compared with a reviewed snapshot. A restructuring must not change it
by accident; a deliberate change updates the snapshot in the same commit:

    TRUEUP_UPDATE_SNAPSHOT=1 .venv/bin/python -m pytest tests/unit/test_definitions_snapshot.py
"""
import json
import os
from pathlib import Path

SNAPSHOT = Path(__file__).parent / "snapshots" / "definitions.json"


def _surface() -> dict:
    from trueup.orchestration.definitions import build_definitions

    defs = build_definitions()
    graph = defs.resolve_asset_graph()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "materializable": node.is_materializable,
            "deps": sorted(p.to_user_string() for p in node.parent_keys),
        }
    checks = sorted(f"{c.asset_key.to_user_string()}:{c.name}" for c in graph.asset_check_keys)
    return {
        "assets": assets,
        "checks": checks,
        "jobs": sorted(j.name for j in defs.resolve_all_job_defs() if not j.name.startswith("__")),
        # with the status each starts in: what runs on a fresh instance without anyone switching it on
        "schedules": sorted((s.name, defs.resolve_schedule_def(s.name).job_name,
                             defs.resolve_schedule_def(s.name).cron_schedule,
                             defs.resolve_schedule_def(s.name).default_status.value) for s in defs.schedules),
        "sensors": sorted(s.name for s in defs.sensors),
    }


def test_the_definitions_match_the_reviewed_snapshot():
    got = json.loads(json.dumps(_surface()))     # tuples → lists, as stored
    if os.environ.get("TRUEUP_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(SNAPSHOT.read_text())
    for part in ("jobs", "schedules", "sensors", "checks"):
        assert got[part] == want[part], part
    added, removed = sorted(set(got["assets"]) - set(want["assets"])), sorted(set(want["assets"]) - set(got["assets"]))
    assert not added and not removed, f"assets added {added}, removed {removed}"
    changed = {k: (want["assets"][k], got["assets"][k]) for k in got["assets"] if got["assets"][k] != want["assets"][k]}
    assert not changed, changed
