"""The container and Kubernetes files (issue 20 item 4), checked offline: this machine has no
container runtime or cluster. What can be checked: they parse, they start the same entry points
as the tested topology (tests/topology.py), they set only variables Trueup reads, secrets are
never written into them, and they configure the instance as orchestration/dagster_production.yaml."""
from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from trueup.orchestration.config import FILE_SETTINGS
from tests.topology import CODE_LOCATION_ARGS, CODE_SERVER

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "orchestration" / "deploy"
#: what the processes read besides the settings file's variables
KNOWN = FILE_SETTINGS | {"TRUEUP_HOME", "TRUEUP_CRM_TOKEN", "TRUEUP_CELERY_BROKER", "DAGSTER_HOME", "DAGSTER_PG_HOST",
                         "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"}
SECRETS = ("TRUEUP_CRM_TOKEN", "DAGSTER_PG_PASSWORD")


def _dockerfile_cmd() -> list[str]:
    text = (REPO / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*?\])\s*$", text.replace("\\\n", " "), re.M | re.S)
    assert cmd, "the Dockerfile has an exec-form CMD"
    return json.loads(cmd.group(1))


def test_the_image_runs_the_code_server_the_topology_test_runs_from_the_lock():
    text = (REPO / "Dockerfile").read_text()
    cmd = _dockerfile_cmd()
    assert cmd[:3] == CODE_SERVER and cmd[-len(CODE_LOCATION_ARGS):] == CODE_LOCATION_ARGS
    assert "uv sync --frozen --no-dev" in text            # installed from uv.lock, nothing resolved anew
    assert "orchestration/dagster_production.yaml /opt/dagster/home/dagster.yaml" in text
    assert "dbt parse" in text                             # the manifest, as `make setup` prepares it
    assert re.search(r"^USER trueup$", text, re.M)         # not root
    assert not any(re.search(rf"{s}\s*=", text) for s in SECRETS)
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".venv", ".env", "dbt_project/target", "**/*.duckdb"} <= set(ignored)


def test_compose_runs_the_topology_with_the_same_entry_points_and_variables():
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "code-location", "webserver", "daemon"}
    code = services["code-location"]["command"]
    assert code == _dockerfile_cmd()
    workspace = "/opt/trueup/orchestration/deploy/workspace.yaml"
    assert services["webserver"]["command"][0] == "dagster-webserver" and services["webserver"]["command"][-2:] == [
        "-w", workspace]
    assert services["daemon"]["command"] == ["dagster-daemon", "run", "-w", workspace]
    # the UI published on the host's loopback only; nothing else published
    assert services["webserver"]["ports"] == ["127.0.0.1:3000:3000"]
    assert all("ports" not in s for n, s in services.items() if n != "webserver")
    for name in ("code-location", "webserver", "daemon"):
        env = services[name]["environment"]
        assert set(env) <= KNOWN, set(env) - KNOWN
        for secret in SECRETS:   # from the caller's environment, never a value in the file
            assert str(env.get(secret, "${")).startswith("${"), (name, secret)
    # the workspace points the webserver and the daemon at the code location's gRPC port
    ws = yaml.safe_load((DEPLOY / "workspace.yaml").read_text())["load_from"][0]["grpc_server"]
    assert (ws["host"], str(ws["port"]), ws["location_name"]) == ("code-location", code[code.index("-p") + 1], "trueup")


def test_the_helm_values_deploy_the_image_with_the_k8s_run_launcher_and_trueups_run_queue():
    values = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == CODE_LOCATION_ARGS[:2]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["telemetry"]["enabled"] is False
    production = yaml.safe_load((REPO / "orchestration" / "dagster_production.yaml").read_text())
    queued = values["dagsterDaemon"]["runCoordinator"]
    assert queued["type"] == "QueuedRunCoordinator"
    limits = queued["config"]["queuedRunCoordinator"]
    assert limits["maxConcurrentRuns"] == production["concurrency"]["runs"]["max_concurrent_runs"]
    assert limits["tagConcurrencyLimits"] == production["concurrency"]["runs"]["tag_concurrency_limits"]
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert monitoring["maxRuntimeSeconds"] == production["run_monitoring"]["max_runtime_seconds"]
    for env in (deployment, values["runLauncher"]["config"]["k8sRunLauncher"]):
        assert env["envSecrets"] == [{"name": "trueup-secrets"}]
