# The Trueup code location, as the production topology runs it (tests/e2e/test_production_topology.py
# runs the same entry point on one machine): a gRPC code server that the Dagster webserver and
# daemon load the definitions from, and whose DefaultRunLauncher starts each run in this container.
# Installed from uv.lock (the `distributed` extra included: TRUEUP_EXECUTOR=celery workers use
# this image too). No secret is baked in: every setting comes from the environment at run time.
FROM python:3.11-slim-bookworm

ENV DO_NOT_TRACK=1 \
    DAGSTER_DISABLE_TELEMETRY=1 \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    PYTHONUNBUFFERED=1 \
    UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1

RUN pip install --no-cache-dir "uv==0.13.9" && useradd --create-home --uid 10001 trueup

WORKDIR /opt/trueup
# dependencies first (a layer that changes only with the lock), then the project
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --extra distributed --no-install-project
COPY . .
RUN uv sync --frozen --no-dev --extra distributed \
    # dbt's manifest is prepared at build time, as `make setup` does (Dagster never parses at import)
    && cd dbt_project && TRUEUP_DBT_TARGET=duckdb TRUEUP_DBT_DUCKDB_PATH=parse_only.duckdb \
       ../.venv/bin/dbt parse --quiet --profiles-dir . && rm -f parse_only.duckdb

# the production Dagster instance: storage in PostgreSQL from DAGSTER_PG_*, the queued run
# coordinator, one run per business day (orchestration/dagster_production.yaml)
ENV PATH=/opt/trueup/.venv/bin:$PATH \
    DAGSTER_HOME=/opt/dagster/home \
    TRUEUP_HOME=/var/lib/trueup
RUN mkdir -p /opt/dagster/home /var/lib/trueup \
    && cp orchestration/dagster_production.yaml /opt/dagster/home/dagster.yaml \
    && chown -R trueup /opt/dagster/home /var/lib/trueup && chmod 700 /var/lib/trueup
USER trueup

EXPOSE 4000
# 0.0.0.0 inside the container's network only: compose.yaml publishes nothing of it to the host
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-m", "trueup.orchestration.definitions", "--location-name", "trueup"]
