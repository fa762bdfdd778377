"""Configuration reaches runs and sensors by one route: the `settings` resource, whose fields are
the environment variables. The code location shows each variable set by its name (EnvVar), never
its value — a token or a database password never sits in resource config — and a run resolves the
settings once, for all its resources and steps."""
from __future__ import annotations

import pytest

from tests.world_fixtures import tiny_world  # noqa: F401 - fixture

SECRETS = {
    "TRUEUP_CRM_TOKEN": "tok-s3cret-0123456789",
    "TRUEUP_WAREHOUSE_URL": "postgresql://etl:pg-s3cret@db.internal:5432/wh",
    "TRUEUP_ERP_URL": "postgresql://erp:erp-s3cret@erp.internal/erp",
    "TRUEUP_ALERT_WEBHOOK_URL": "https://hooks.example.com/services/hook-s3cret",
}
#: the secret part of each value above
SECRET_PARTS = ("tok-s3cret", "pg-s3cret", "erp-s3cret", "hook-s3cret")


def test_the_settings_resource_has_a_field_for_every_variable():
    from trueup.orchestration.config import FILE_SETTINGS
    from trueup.orchestration.resources import VARIABLES, SettingsResource

    assert set(VARIABLES.values()) == FILE_SETTINGS | {"TRUEUP_HOME", "TRUEUP_CRM_TOKEN"}
    assert set(VARIABLES) == set(SettingsResource.model_fields)


def test_the_resources_show_secrets_by_variable_name_only(tmp_path, monkeypatch):
    from dagster._core.remote_representation.external_data import (
        NestedResourceType,
        RepositorySnap,
        ResourceConfigEnvVarSnap,
    )
    from dagster._serdes import serialize_value

    from trueup.orchestration.definitions import build_definitions

    monkeypatch.setenv("TRUEUP_HOME", str(tmp_path / "home"))
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    # what the UI receives from the code location: every resource, its config and its dependencies
    snap = RepositorySnap.from_def(build_definitions().get_repository_def())
    resources = {r.name: r for r in snap.resources}
    shown = resources["settings"].configured_values
    for field, variable in (("crm_token", "TRUEUP_CRM_TOKEN"), ("warehouse_url", "TRUEUP_WAREHOUSE_URL"),
                            ("erp_url", "TRUEUP_ERP_URL"), ("alert_webhook_url", "TRUEUP_ALERT_WEBHOOK_URL"),
                            ("home", "TRUEUP_HOME")):
        assert shown[field] == ResourceConfigEnvVarSnap(name=variable), field
    assert shown["crm_token_file"] == "null"     # unset: the settings file or the default, at run time
    for name in ("warehouse", "crm", "erp", "landing"):
        dependency = resources[name].nested_resources["settings"]
        assert (dependency.type, dependency.name) == (NestedResourceType.TOP_LEVEL, "settings"), name
    for name, resource in resources.items():
        config = serialize_value(resource.configured_values)
        assert not [part for part in SECRET_PARTS if part in config], (name, config)
    everything = serialize_value(snap)
    assert not [part for part in SECRET_PARTS if part in everything]


@pytest.fixture
def resolutions(monkeypatch) -> list:
    """Every resolution of the settings (orchestration.config.load_settings), wherever it is called."""
    import trueup.orchestration.config as config
    import trueup.orchestration.resources as resources

    made, real = [], config.load_settings

    def counted(*args, **kw):
        made.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(config, "load_settings", counted)
    monkeypatch.setattr(resources, "load_settings", counted)
    return made


def test_a_run_and_a_sensor_tick_resolve_the_settings_once(tiny_world, resolutions):
    from dagster import DagsterInstance, build_sensor_context
    from dagster._serdes import serialize_value

    from trueup.orchestration.config import load_settings
    from trueup.orchestration.definitions import build_definitions
    from trueup.orchestration.runner import open_instance, run_job

    w = tiny_world
    settings = load_settings()
    resolutions.clear()
    outcome = run_job(settings, "nightly_sync", w.days()[0])    # every resource: warehouse, CRM, ERP, landing, dbt
    assert outcome.success, outcome.error
    assert len(resolutions) == 1

    with open_instance(settings) as instance:   # the token is in neither the run's config nor its events
        run = instance.get_run_by_id(outcome.run_id)
        assert w.token not in serialize_value(run.run_config)
        assert w.token not in serialize_value(list(instance.all_logs(outcome.run_id)))
    assert w.token not in outcome.log_path.read_text()

    defs = build_definitions()
    sensor = defs.resolve_sensor_def("erp_export_sensor")    # the warehouse and the landing folder
    resolutions.clear()
    with DagsterInstance.ephemeral() as instance, \
            build_sensor_context(instance=instance, definitions=defs, resources=defs.resources) as context:
        sensor(context)
    assert len(resolutions) == 1
