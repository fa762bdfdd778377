"""The dbt parse a process keeps (assets/transform/dbt_runner.ParsedProjects) is reused only where
a fresh parse would give the same Manifest: same project files, environment variables the project
reads, profile (but for a DuckDB file's folder) and --vars."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

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
    # another database name, another adapter: another parse
    assert ParsedProjects.key(PROJECT_DIR, "duckdb:////homes/a/other.duckdb", VARS) != key
    # other vars: the same parse, as this project uses its vars in SQL bodies only
    # (test_a_parse_with_other_vars_is_the_same_manifest)
    assert ParsedProjects.key(PROJECT_DIR, DUCK, ["--vars", '{"publish_from": "2026-11-01"}']) == key
    pg = "postgresql://u:secret@127.0.0.1:5432/wh"
    assert ParsedProjects.key(PROJECT_DIR, pg, VARS) != ParsedProjects.key(PROJECT_DIR, pg.replace("/wh", "/w2"), VARS)
    assert "secret" not in ParsedProjects.key(PROJECT_DIR, pg, VARS)
    # an environment variable the project reads in a SQL body only (macros/roi.sql): the same parse
    monkeypatch.setenv("TRUEUP_PUBLISH_FROM", "2026-10-15")
    assert ParsedProjects.key(PROJECT_DIR, DUCK, VARS) == key
    # one its YAML reads (profiles.yml): another parse
    monkeypatch.setenv("TRUEUP_DBT_TARGET", "elsewhere")
    assert ParsedProjects.key(PROJECT_DIR, DUCK, VARS) != key
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


def test_vars_are_in_the_key_once_a_parse_would_use_them(tmp_path, monkeypatch):
    """A var or an environment variable in a model's config(), ref() or source(), or anywhere in
    the project's YAML, decides what the parse holds: then other values are another parse."""
    copy = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_DIR, copy, ignore=shutil.ignore_patterns("target", "logs"))
    other = ["--vars", '{"publish_from": "2026-11-01", "reporting_currency": "EUR"}']
    assert ParsedProjects.key(copy, DUCK, VARS) == ParsedProjects.key(copy, DUCK, other)
    model = copy / "models" / "by_var.sql"
    for text in ("{{ config(materialized=var('m', 'view')) }}\nselect 1 as one\n",
                 "{{ config(tags=['a', ('b')], materialized=var('m', 'view')) }}\nselect 1 as one\n",
                 "select * from {{ ref(var('upstream', 'fx_rates')) }}\n"):
        model.write_text(text)
        assert ParsedProjects.key(copy, DUCK, VARS) != ParsedProjects.key(copy, DUCK, other), text
    model.write_text("{{ config(materialized=env_var('TRUEUP_TEST_MATERIALIZED', 'view')) }}\nselect 1 as one\n")
    before = ParsedProjects.key(copy, DUCK, VARS)
    monkeypatch.setenv("TRUEUP_TEST_MATERIALIZED", "table")
    assert ParsedProjects.key(copy, DUCK, VARS) != before
    model.write_text("select {{ var('reporting_currency') }} as c from {{ ref('fx_rates') }}\n")   # a body: no
    assert ParsedProjects.key(copy, DUCK, VARS) == ParsedProjects.key(copy, DUCK, other)
    (copy / "models" / "by_var.yml").write_text(
        "version: 2\nmodels:\n  - name: by_var\n    config: {enabled: \"{{ var('on', true) }}\"}\n")
    assert ParsedProjects.key(copy, DUCK, VARS) != ParsedProjects.key(copy, DUCK, other)


def test_a_parse_with_other_vars_is_the_same_manifest(tmp_path):
    """What lets the key leave the vars and TRUEUP_PUBLISH_FROM out, checked on the project itself:
    `dbt parse` with other vars (go-live, currency and the SLA all changed) and TRUEUP_PUBLISH_FROM
    set gives the Manifest a parse with the project's defaults gives: the same nodes, sources,
    macros and tests, field by field."""
    import json as json_
    import os
    import subprocess
    import sys

    from dbt.contracts.graph.manifest import Manifest
    from dbt.parser.manifest import extended_mashumuro_decoder

    def parsed(path):
        m = Manifest.from_msgpack(path.read_bytes(), decoder=extended_mashumuro_decoder)
        out = {}
        for kind in ("nodes", "sources", "macros", "docs", "exposures", "metrics", "groups", "disabled",
                     "semantic_models", "unit_tests", "saved_queries"):
            items = getattr(m, kind)
            out[kind] = {k: _comparable(v) for k, v in items.items()}
        return out

    env = {**os.environ, "TRUEUP_DBT_TARGET": "duckdb", "TRUEUP_DBT_DUCKDB_PATH": "parse_only.duckdb",
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    env.pop("TRUEUP_PUBLISH_FROM", None)
    other = {"publish_from": "2027-02-01", "reporting_currency": "EUR", "order_sla_hours": 24,
             "order_slo_objective": 0.95, "minutes_per_manual_order": 30, "match_window_days": 3}
    # two parses side by side, into folders of their own (other tests write the project's target/)
    parses = {}
    for name, extra, extra_env in (("defaults", [], {}),
                                   ("other", ["--vars", json_.dumps(other)], {"TRUEUP_PUBLISH_FROM": "2027-03-01"})):
        parses[name] = subprocess.Popen(
            [str(Path(sys.executable).with_name("dbt")), "parse", "--quiet", "--profiles-dir", ".",
             "--target-path", str(tmp_path / name), *extra], cwd=PROJECT_DIR, env={**env, **extra_env},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for name, proc in parses.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name}: {out[-2000:]}"
    defaults, with_other_vars = (parsed(tmp_path / "defaults" / "partial_parse.msgpack"),
                                 parsed(tmp_path / "other" / "partial_parse.msgpack"))
    assert defaults["nodes"] and defaults.keys() == with_other_vars.keys()
    for kind in defaults:
        assert defaults[kind] == with_other_vars[kind], kind


def _comparable(item):
    """A Manifest entry as data, without what differs between any two parses (creation times)."""
    data = item.to_dict() if hasattr(item, "to_dict") else [i.to_dict() for i in item]
    for d in data if isinstance(data, list) else [data]:
        d.pop("created_at", None)
    return data


def test_the_oldest_parse_goes_first():
    kept = ParsedProjects(size=2)
    kept.put("a", "manifest a")
    kept.put("b", "manifest b")
    assert kept.get("a") == "manifest a"      # a is now the latest used
    kept.put("c", "manifest c")
    assert (kept.get("a"), kept.get("b"), kept.get("c")) == ("manifest a", None, "manifest c")


def test_a_process_reads_the_parse_another_stored_instead_of_parsing(tmp_path, monkeypatch):
    """dbt_runner.run_dbt: the first process parses and stores the Manifest (parse_store.py); a
    new process (nothing in memory) runs with the stored one and parses nothing; a store it cannot
    read is parsed again. The store is its user's alone."""
    import types

    from dbt.contracts.graph.manifest import Manifest
    from dbt.parser.manifest import extended_mashumuro_decoder

    from trueup.assets.transform import dbt_runner, parse_store
    from trueup.orchestration.config import load_settings

    project = tmp_path / "dbt_project"
    shutil.copytree(PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs"))
    parsed = Manifest.from_msgpack((PROJECT_DIR / "target" / "partial_parse.msgpack").read_bytes(),
                                   decoder=extended_mashumuro_decoder)   # `make setup`'s parse
    calls = []

    def fake_invoke(args, callback, manifest=None):
        command = "parse" if "parse" in args else args[args.index("--no-write-json") + 1]
        calls.append((command, manifest is not None and len(manifest.nodes)))
        return types.SimpleNamespace(success=True, exception=None, result=parsed if command == "parse" else None)

    monkeypatch.setattr(dbt_runner, "_invoke", fake_invoke)
    settings = load_settings({"TRUEUP_HOME": str(tmp_path / "home")})

    def a_new_process_runs_ls():
        monkeypatch.setattr(dbt_runner, "_PARSED", dbt_runner.ParsedProjects())
        calls.clear()
        dbt_runner.run_dbt(settings, ["ls"], VARS, [], project_dir=project)
        return list(calls)

    assert a_new_process_runs_ls() == [("parse", False), ("ls", len(parsed.nodes))]
    stored = list(parse_store.store_dir(project).glob("*.msgpack"))
    assert len(stored) == 1 and stored[0].stat().st_mode & 0o077 == 0
    assert parse_store.store_dir(project).stat().st_mode & 0o077 == 0
    assert a_new_process_runs_ls() == [("ls", len(parsed.nodes))]   # read, not parsed
    stored[0].write_bytes(b"not a manifest")
    assert a_new_process_runs_ls() == [("parse", False), ("ls", len(parsed.nodes))]
    assert a_new_process_runs_ls() == [("ls", len(parsed.nodes))]   # stored again


def test_the_store_keeps_the_most_recent_parses_only(tmp_path):
    from dbt.contracts.graph.manifest import Manifest
    from dbt.parser.manifest import extended_mashumuro_decoder

    from trueup.assets.transform import parse_store

    parsed = Manifest.from_msgpack((PROJECT_DIR / "target" / "partial_parse.msgpack").read_bytes(),
                                   decoder=extended_mashumuro_decoder)
    import os
    import time

    base = time.time() - 1000
    for i in range(parse_store.KEPT + 2):
        parse_store.save(tmp_path, f"key{i:02d}", parsed)
        # written one after the other (a clock tick can hold several writes)
        os.utime(parse_store.store_dir(tmp_path) / f"key{i:02d}.msgpack", (base + i, base + i))
    kept = sorted(p.stem for p in parse_store.store_dir(tmp_path).iterdir())
    assert kept == [f"key{i:02d}" for i in range(2, parse_store.KEPT + 2)]
    assert len(parse_store.load(tmp_path, "key09").nodes) == len(parsed.nodes)
    assert parse_store.load(tmp_path, "key00") is None
