# The two commands: `make demo` and `make test`. Both install what they need first.
SHELL := /bin/bash
export DO_NOT_TRACK := 1
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test ui bench clean

$(BIN)/trueup: pyproject.toml uv.lock
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --quiet uv
	uv sync --frozen --python 3.11
	@touch $(BIN)/trueup

setup: $(BIN)/trueup

demo: setup            ## sandbox up, seed, nightly runs, summary
	$(BIN)/trueup demo

test: setup            ## the whole test suite (starts its own PostgreSQL)
	$(BIN)/python -m pytest -q

ui: setup              ## the Dagster UI on http://127.0.0.1:3000
	$(BIN)/trueup ui

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf .trueup dbt_project/target dbt_project/logs
