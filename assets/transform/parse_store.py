"""dbt's parsed Manifest kept on disk across processes, under the key a process keeps it in memory by
(dbt_runner.ParsedProjects.key: the project's files, the environment variables it reads, the
profile but for a DuckDB file's folder, the --vars, dbt's version).

Why: a process's first build parses the project again, ~3 s of CPU, in every process that runs
dbt — each CLI run, each run worker, each test worker's new home. Reading a stored parse takes
~0.13 s. (One `make test` made 31 parses, 93 s, before; 21, 75 s, with the store, its worlds
using 16 different keys; 6, 28 s, once the key left out the go-live and currency a parse does
not use: dbt_runner._read_at_parse.) dbt's own partial parse cannot
help there: it starts over when the profile differs, and a new home's DuckDB path does.

Where: `<project>/target/parsed/<key>.msgpack`, dbt's own msgpack form of a Manifest (the one its
partial parse writes), in a folder only its user can read, the KEPT most recently written kept.
Written whole to a temporary file and renamed, so a reader never sees half a file; anything that
cannot be read (another dbt release, a damaged file) is parsed again and overwritten.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: parses kept (~1.2 MB each): an operator's runs use one or two keys; one `make test` used 16
#: while go-lives were in the key, a handful since (its PostgreSQL databases differ)
KEPT = 32


def store_dir(project_dir: Path) -> Path:
    return Path(project_dir) / "target" / "parsed"


def load(project_dir: Path, key: str) -> Any | None:
    """The Manifest stored under `key`, ready to run with; None when there is none or it cannot be
    read."""
    path = store_dir(project_dir) / f"{key}.msgpack"
    try:
        data = path.read_bytes()
    except OSError:
        return None
    try:
        from dbt.contracts.graph.manifest import Manifest
        from dbt.parser.manifest import extended_mashumuro_decoder

        manifest = Manifest.from_msgpack(data, decoder=extended_mashumuro_decoder)
        manifest.build_flat_graph()   # as dbt does after loading a parse (ManifestLoader.get_full_manifest)
        return manifest
    except Exception as exc:  # noqa: BLE001 - any unreadable store is a cache miss: parse again
        log.info("stored dbt parse %s not used (%s: %s); parsing again", path.name, type(exc).__name__, exc)
        return None


def save(project_dir: Path, key: str, manifest) -> None:
    """Store `manifest` under `key`; a store that cannot be written (a read-only project) is skipped."""
    from dbt.parser.manifest import extended_mashumaro_encoder

    folder = store_dir(project_dir)
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".writing-", suffix=".tmp")   # mode 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(manifest.to_msgpack(extended_mashumaro_encoder))
            os.replace(tmp, folder / f"{key}.msgpack")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _prune(folder)
    except OSError as exc:
        log.info("dbt parse not stored in %s (%s)", folder, exc)


def _prune(folder: Path) -> None:
    def written(p: Path) -> int:
        try:
            return p.stat().st_mtime_ns
        except OSError:   # pruned by another process meanwhile
            return 0

    for old in sorted(folder.glob("*.msgpack"), key=written, reverse=True)[KEPT:]:
        with contextlib.suppress(OSError):
            old.unlink()
