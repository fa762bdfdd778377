"""TRUEUP_EXECUTOR: the partitioned jobs' executor, chosen by configuration (issue 20 item 2). In
process with DuckDB (one writer), the multiprocess or Celery executor with a PostgreSQL warehouse;
anything else is one clear line."""
from __future__ import annotations

import pytest

from trueup.orchestration.config import ConfigError
from trueup.orchestration.executors import partitioned_job_executor

PG = {"TRUEUP_WAREHOUSE_URL": "postgresql://trueup@127.0.0.1:5432/warehouse"}


def test_in_process_by_default_and_with_duckdb():
    assert partitioned_job_executor({}).name == "in_process"
    assert partitioned_job_executor({"TRUEUP_WAREHOUSE_URL": "duckdb:////tmp/w.duckdb"}).name == "in_process"


def test_postgres_may_choose_multiprocess_or_celery(monkeypatch):
    monkeypatch.delenv("TRUEUP_CELERY_BROKER", raising=False)
    assert partitioned_job_executor({**PG, "TRUEUP_EXECUTOR": "multiprocess"}).name == "multiprocess"
    celery = partitioned_job_executor({**PG, "TRUEUP_EXECUTOR": "celery", "TRUEUP_CELERY_BROKER": "redis://127.0.0.1/0"})
    assert celery.name == "celery"   # (tests/e2e/test_celery_executor.py runs it)


@pytest.mark.parametrize("env, needle", [
    ({"TRUEUP_EXECUTOR": "celery", "TRUEUP_CELERY_BROKER": "redis://x/0"}, "needs a PostgreSQL warehouse"),
    ({"TRUEUP_EXECUTOR": "multiprocess", "TRUEUP_WAREHOUSE_URL": "duckdb:////tmp/w.duckdb"}, "one writing process"),
    ({**PG, "TRUEUP_EXECUTOR": "celery"}, "needs TRUEUP_CELERY_BROKER"),
    ({**PG, "TRUEUP_EXECUTOR": "k8s"}, "must be one of in_process, multiprocess, celery"),
])
def test_a_choice_that_cannot_work_is_one_line(env, needle, monkeypatch):
    monkeypatch.delenv("TRUEUP_CELERY_BROKER", raising=False)
    with pytest.raises(ConfigError, match=needle) as err:
        partitioned_job_executor(env)
    assert "\n" not in str(err.value)
