"""The dbt parse a process keeps (assets/transform/dbt_runner.ParsedProjects) is reused only where
a fresh parse would give the same Manifest: same project files, environment variables the project
reads, profile (but for a DuckDB file's folder) and --vars."""
from __future__ import annotations

import re
import shutil

from trueup.assets.transform.dbt_runner import TARGET_ATTRIBUTES_READ, ParsedProjects
from trueup.assets.transform.invocation import PROJECT_DIR

VARS = ["--vars", '{"publish_from": "2026-10-01", "reporting_currency": "USD"}']
DUCK = "duckdb:////homes/a/warehouse.duckdb"


def test_the_project_reads_no_target_attribute_the_parse_key_leaves_out():
    """The key drops the DuckDB file's folder; that is sound only while no Jinja of the project
    reads target.path (or any attribute outside TARGET_ATTRIBUTES_READ)."""
    read = set()
    for p in PROJECT_DIR.rglob("*"):
        if p.is_file() and p.suffix in (".sql", ".yml", ".yaml") and p.relative_to(PROJECT_DIR).parts[0] != "target":
            read |= set(re.findall(r"\btarget\.(\w+)", p.read_text(encoding="utf-8")))
    assert read and read <= TARGET_ATTRIBUTES_READ, read - TARGET_ATTRIBUTES_READ


def test_worlds_in_other_folders_share_a_parse_and_nothing_else_does(tmp_path, monkeypatch):
    key = ParsedProjects.key(PROJECT_DIR, DUCK, VARS)
    assert ParsedProjects.key(PROJECT_DIR, "duckdb:////elsewhere/b/warehouse.duckdb", VARS) == key
    # another database name, other vars, another adapter: another parse
    assert ParsedProjects.key(PROJECT_DIR, "duckdb:////homes/a/other.duckdb", VARS) != key
    assert ParsedProjects.key(PROJECT_DIR, DUCK, ["--vars", '{"publish_from": "2026-11-01"}']) != key
    pg = "postgresql://u:secret@127.0.0.1:5432/wh"
    assert ParsedProjects.key(PROJECT_DIR, pg, VARS) != ParsedProjects.key(PROJECT_DIR, pg.replace("/wh", "/w2"), VARS)
    assert "secret" not in ParsedProjects.key(PROJECT_DIR, pg, VARS)
    # an environment variable the project reads (env_var in macros/roi.sql)
    monkeypatch.setenv("TRUEUP_PUBLISH_FROM", "2026-10-15")
    assert ParsedProjects.key(PROJECT_DIR, DUCK, VARS) != key
    monkeypatch.delenv("TRUEUP_PUBLISH_FROM")
    assert ParsedProjects.key(PROJECT_DIR, DUCK, VARS) == key
    # an edited model (in a copy of the project), and a new one
    copy = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    before = ParsedProjects.key(copy, DUCK, VARS)
    model = next((copy / "models").rglob("*.sql"))
    model.write_text(model.read_text() + "\n-- edited\n")
    assert ParsedProjects.key(copy, DUCK, VARS) != before
    edited = ParsedProjects.key(copy, DUCK, VARS)
    (model.parent / "new_model.sql").write_text("select 1 as one\n")
    assert ParsedProjects.key(copy, DUCK, VARS) != edited


def test_the_oldest_parse_goes_first():
    kept = ParsedProjects(size=2)
    kept.put("a", "manifest a")
    kept.put("b", "manifest b")
    assert kept.get("a") == "manifest a"      # a is now the latest used
    kept.put("c", "manifest c")
    assert (kept.get("a"), kept.get("b"), kept.get("c")) == ("manifest a", None, "manifest c")
