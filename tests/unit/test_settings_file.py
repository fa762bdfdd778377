"""`$TRUEUP_HOME/trueup.env`: what the environment leaves unset comes from there, the environment
wins, no secret sits in it, and a seeded sandbox world records its dates there — which is all the
platform learns of the world."""
from __future__ import annotations

import datetime as dt

import pytest

from trueup.orchestration.config import ConfigError, load_settings, settings_file, update_settings_file
from trueup.orchestration.partitions import partition_settings


def test_the_environment_wins_over_the_file(tmp_path):
    home = tmp_path / "home"
    update_settings_file(settings_file(home), {"TRUEUP_START_DATE": "2026-09-05", "TRUEUP_PUBLISH_FROM": "2026-09-20",
                                               "TRUEUP_REPORTING_CURRENCY": "EUR"})
    s = load_settings({"TRUEUP_HOME": str(home), "TRUEUP_PUBLISH_FROM": "2026-09-25", "TRUEUP_REPORTING_CURRENCY": ""})
    assert (s.start_date, s.publish_from, s.reporting_currency) == (dt.date(2026, 9, 5), dt.date(2026, 9, 25), "EUR")
    assert partition_settings({"TRUEUP_HOME": str(home)}) == ("2026-09-05", "UTC")
    assert (settings_file(home).stat().st_mode & 0o777) == 0o600


def test_without_a_file_the_plain_defaults(tmp_path):
    s = load_settings({"TRUEUP_HOME": str(tmp_path / "nothing-here")})
    assert (s.start_date, s.publish_from, s.backfill_end) == (dt.date(2026, 9, 1), dt.date(2026, 10, 1), None)
    assert s.crm_token_if_set is None and s.uses_sandbox_crm
    with pytest.raises(ConfigError, match="TRUEUP_CRM_TOKEN"):
        s.crm_token


def test_the_token_comes_from_its_own_file_never_from_the_settings_file(tmp_path):
    home = tmp_path / "home"
    token = tmp_path / "token"
    token.write_text("tok-from-file\n")
    update_settings_file(settings_file(home), {"TRUEUP_CRM_TOKEN_FILE": str(token)})
    assert load_settings({"TRUEUP_HOME": str(home)}).crm_token == "tok-from-file"
    assert load_settings({"TRUEUP_HOME": str(home), "TRUEUP_CRM_TOKEN": "tok-env"}).crm_token == "tok-env"
    with settings_file(home).open("a") as fh:
        fh.write("TRUEUP_CRM_TOKEN=tok-in-a-file\n")
    with pytest.raises(ConfigError, match="TRUEUP_CRM_TOKEN is a secret") as err:
        load_settings({"TRUEUP_HOME": str(home)})
    assert "tok-in-a-file" not in str(err.value)


@pytest.mark.parametrize("line, message", [("TRUEUP_HOME=/elsewhere", "cannot be set"),
                                           ("TRUEUP_PUBLISH_FROM 2026-09-01", "expected VARIABLE=value"),
                                           ("TRUEUP_PUBLISH_FROM=yesterday", "TRUEUP_PUBLISH_FROM")])
def test_a_bad_line_names_itself(tmp_path, line, message):
    home = tmp_path / "home"
    home.mkdir()
    settings_file(home).write_text(f"# a comment\n\n{line}\n")
    with pytest.raises(ConfigError, match=message):
        load_settings({"TRUEUP_HOME": str(home)})


def test_updating_keeps_other_lines_and_removes_what_is_none(tmp_path):
    path = settings_file(tmp_path)
    path.write_text("# mine\nTRUEUP_TIMEZONE=Europe/Paris\nTRUEUP_START_DATE=2026-01-01\n")
    update_settings_file(path, {"TRUEUP_START_DATE": "2026-09-01", "TRUEUP_BACKFILL_END": "2026-09-09"})
    update_settings_file(path, {"TRUEUP_BACKFILL_END": None})
    assert path.read_text() == "# mine\nTRUEUP_TIMEZONE=Europe/Paris\nTRUEUP_START_DATE=2026-09-01\n"
    update_settings_file(tmp_path / "absent" / "trueup.env", {"TRUEUP_START_DATE": None})
    assert not (tmp_path / "absent").exists()   # nothing to remove: no file made


def test_a_seeded_world_records_its_dates_and_a_reset_forgets_them(tmp_path):
    from trueup.sandbox.generator.config import WorldConfig
    from trueup.sandbox.generator.world import WorldPaths, advance_world, reset_world, seed_world

    home = tmp_path / "home"
    paths = WorldPaths(home / "sandbox", f"sqlite:///{home / 'sandbox' / 'erp.sqlite'}", home / "landing")
    seed_world(paths, WorldConfig(seed=3, scale=0.2, days=6), days=2)
    s = load_settings({"TRUEUP_HOME": str(home)})
    assert (s.start_date, s.publish_from, s.backfill_end) == (dt.date(2026, 9, 1), dt.date(2026, 9, 4),
                                                              dt.date(2026, 9, 2))
    advance_world(paths, days=1)
    assert load_settings({"TRUEUP_HOME": str(home)}).backfill_end == dt.date(2026, 9, 3)
    reset_world(paths)
    s = load_settings({"TRUEUP_HOME": str(home)})
    assert (s.start_date, s.publish_from, s.backfill_end) == (dt.date(2026, 9, 1), dt.date(2026, 10, 1), None)


def test_the_crm_limits_come_from_the_settings_and_reach_the_client(tmp_path, monkeypatch):
    """TRUEUP_CRM_REQUESTS_PER_10S / TRUEUP_CRM_SEARCHES_PER_SECOND: HubSpot's defaults unless set
    (environment or settings file); the run's CRM client paces itself under them."""
    from trueup.orchestration.resources import CrmResource, SettingsResource

    plain = load_settings({"TRUEUP_HOME": str(tmp_path)})
    assert (plain.crm_requests_per_10s, plain.crm_searches_per_second) == (100, 5.0)
    update_settings_file(settings_file(tmp_path), {"TRUEUP_CRM_REQUESTS_PER_10S": "190"})
    env = {"TRUEUP_HOME": str(tmp_path), "TRUEUP_CRM_SEARCHES_PER_SECOND": "12.5", "TRUEUP_CRM_TOKEN": "t"}
    settings = load_settings(env)
    assert (settings.crm_requests_per_10s, settings.crm_searches_per_second) == (190, 12.5)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    client = CrmResource(settings=SettingsResource(), check_first=False).client()
    assert client.throttle.window.max_requests == 190 and client.throttle.searches_per_second == 12.5
    client.close()


@pytest.mark.parametrize("name,value,message", [
    ("TRUEUP_CRM_REQUESTS_PER_10S", "1.5", "is not a whole number"),
    ("TRUEUP_CRM_REQUESTS_PER_10S", "0", "must be above 0"),
    ("TRUEUP_CRM_SEARCHES_PER_SECOND", "fast", "is not a number"),
    ("TRUEUP_CRM_SEARCHES_PER_SECOND", "-1", "must be above 0"),
])
def test_a_bad_crm_limit_is_one_line_naming_the_variable(tmp_path, name, value, message):
    with pytest.raises(ConfigError, match=rf"^{name}='{value}' {message}$"):
        load_settings({"TRUEUP_HOME": str(tmp_path), name: value})


def test_gx_data_docs_are_on_unless_switched_off(tmp_path):
    assert load_settings({"TRUEUP_HOME": str(tmp_path)}).gx_data_docs is True
    assert load_settings({"TRUEUP_HOME": str(tmp_path), "TRUEUP_GX_DATA_DOCS": "off"}).gx_data_docs is False
    update_settings_file(settings_file(tmp_path), {"TRUEUP_GX_DATA_DOCS": "off"})
    assert load_settings({"TRUEUP_HOME": str(tmp_path)}).gx_data_docs is False
    with pytest.raises(ConfigError, match=r"^TRUEUP_GX_DATA_DOCS='sometimes' must be on or off$"):
        load_settings({"TRUEUP_HOME": str(tmp_path), "TRUEUP_GX_DATA_DOCS": "sometimes"})
