# The two commands: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
export DO_NOT_TRACK := 1
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-fast ui docs bench clean prod-local

$(BIN)/trueup: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	uv sync --frozen --python 3.11
	@touch $(BIN)/trueup

# dbt's manifest is prepared at build time (Dagster never parses at import). `dbt parse`
# does not connect, so the profile gets placeholder values; runs derive the real ones from
# TRUEUP_WAREHOUSE_URL (assets/transform/profile.py).
DBT_MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project/models dbt_project/macros dbt_project/tests -type f 2>/dev/null)

$(DBT_MANIFEST): $(BIN)/trueup dbt_project/dbt_project.yml dbt_project/profiles.yml $(DBT_SOURCES)
	cd dbt_project && TRUEUP_DBT_TARGET=duckdb TRUEUP_DBT_DUCKDB_PATH=parse_only.duckdb \
		DBT_SEND_ANONYMOUS_USAGE_STATS=false ../$(BIN)/dbt parse --quiet --profiles-dir .
	@touch $(DBT_MANIFEST)

# Bytecode of the installed packages, compiled once. Python caches it on first import, but not
# where PYTHONDONTWRITEBYTECODE is set (CI, containers): there every process, each dbt build
# included, recompiles all it imports (~1 s per dbt build; ~25 s of `trueup demo`).
# Not compiled: what no run imports — the installed packages' own test folders (pandas', scipy's,
# numpy's, …) and the official HubSpot client (2,200 generated files; one test compares the
# sandbox CRM with it). They were 40% of this step: 16 s → 10 s on 2 cores.
# Trueup's own folders too (every run process, test worker and CLI command compiled them again);
# a module edited later is newer than its bytecode, which Python then ignores.
NOT_IMPORTED := /site-packages/(hubspot/|[^/]+/(.+/)?tests?/)
PLATFORM := orchestration assets quality connectors sandbox bench
$(VENV)/.bytecode: $(BIN)/trueup
	$(BIN)/python -m compileall -q -j 0 -x '$(NOT_IMPORTED)' $(VENV)/lib $(PLATFORM) >/dev/null || true
	@touch $@

setup: $(BIN)/trueup $(VENV)/.bytecode $(DBT_MANIFEST)

demo: setup            ## sandbox up, seed, nightly runs, summary
	$(BIN)/trueup demo

test: setup            ## the whole test suite (starts its own PostgreSQL)
	@# the UI end-to-end test screenshots the asset graph with headless Chromium (Debian package)
	@command -v chromium >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get install -y chromium >/dev/null 2>&1 || \
		  { apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1; }; } || true
	@# the Celery executor test (tests/e2e/test_celery_executor.py) starts its own Redis broker
	@command -v redis-server >/dev/null 2>&1 || [ "$$(id -u)" != 0 ] || \
		{ apt-get install -y redis-server >/dev/null 2>&1 || \
		  { apt-get update >/dev/null 2>&1 && apt-get install -y redis-server >/dev/null 2>&1; }; } || true
	@# pytest-xdist, one worker per core plus one: the tests that mostly wait (servers starting, a
	@# schedule's minute, the CRM's rate limit; tests/conftest.py WAITING_TESTS) go to one worker as
	@# a unit, where their ~370 s of waiting overlaps the CPU-bound tests instead of idling a core;
	@# a module with a module-scoped fixture goes out whole (its fixture built once); every other
	@# test is handed out one at a time to whichever worker is free
	@# the worlds, warehouses and Dagster instances of the tests live on the machine's tmpfs where
	@# it has one with room (4 GB free; a container's is often 64 MB): their SQLite and DuckDB
	@# commits then wait for no disk flush
	TMPDIR=$$( free_kb=$$(df -Pk /dev/shm 2>/dev/null | awk 'NR == 2 {print $$4}'); \
		[ -w /dev/shm ] && [ "$${free_kb:-0}" -gt 4000000 ] && echo /dev/shm || echo "$${TMPDIR:-/tmp}" ) \
		$(BIN)/python -m pytest -q -n $$(( $$(nproc) + 1 )) --dist loadgroup

test-fast: setup       ## the inner loop: tests/unit (no generated world, no Dagster run)
	$(BIN)/python -m pytest -q -n auto tests/unit

prod-local: setup      ## the production topology on this machine (PostgreSQL, code server, webserver, daemon)
	$(BIN)/python -m trueup.sandbox.prod_local

ui: setup              ## the Dagster UI on http://127.0.0.1:3000
	$(BIN)/trueup ui

docs: setup            ## dbt docs of the live warehouse, served on http://127.0.0.1:8080
	$(BIN)/trueup docs

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf .trueup dbt_project/target dbt_project/logs
