"""Dagster resources. Each resolves its configuration from the environment when a run
starts (never at import), unless a test passes explicit values."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from dagster import ConfigurableResource, Failure
from pydantic import PrivateAttr

from orchestration.config import Settings, load_settings


class SettingsResource(ConfigurableResource):
    """The whole environment-derived configuration (publish date, currency, time zone…)."""

    def get(self) -> Settings:
        return load_settings()


class WarehouseResource(ConfigurableResource):
    url: Optional[str] = None  # default: TRUEUP_WAREHOUSE_URL or the DuckDB file under TRUEUP_HOME
    _wh = PrivateAttr(default=None)

    def get(self):
        from connectors.warehouse import Warehouse

        if self._wh is None:
            url = self.url or load_settings().warehouse_url
            if url.startswith("duckdb:///"):
                Path(url.removeprefix("duckdb:///")).parent.mkdir(parents=True, exist_ok=True)
            self._wh = Warehouse(url)
        return self._wh


class CrmRefused(Failure):
    """The run's CRM check failed: one line, not retried; classified (ops.sync_runs.error_class)
    as the check's own failure was — permanent for a refused token, transient for no answer."""

    def __init__(self, reason: str, error_class: str) -> None:
        super().__init__(description=reason, allow_retries=False)
        self.error_class = error_class


class CrmResource(ConfigurableResource):
    """The CRM API. The token is read from TRUEUP_CRM_TOKEN (or TRUEUP_CRM_TOKEN_FILE) at run time and
    never appears in run config, logs or metadata.

    The first `client()` of a run checks the CRM once — the check `trueup nightly` makes before
    it starts a run (orchestration.crm_check.require_crm: one request, no retries) — so a run
    launched from the UI, the schedule or a sensor fails in seconds with one line too, instead
    of retrying for minutes: a refused token (401/403), a URL that is no CRM API, or nothing
    answering at the address fails the step with a `dagster.Failure` (CrmRefused) that is not
    retried. A CRM that answers but badly (5xx, a dropped connection) is left to the client's
    retries."""

    base_url: Optional[str] = None
    requests_per_10s: int = 100
    searches_per_second: float = 5
    max_concurrency: int = 4
    check_first: bool = True   # the one-request check before the first use in a run
    _client = PrivateAttr(default=None)
    _refused = PrivateAttr(default=None)   # (one-line reason, error class), kept for the run's other steps

    def client(self):
        from connectors.hubspot import HubSpotClient

        if self._refused is not None:
            raise CrmRefused(*self._refused)
        if self._client is None:
            settings = load_settings()
            url = self.base_url or settings.crm_base_url
            if self.check_first:
                self._check(settings, url)
            self._client = HubSpotClient(
                url, settings.crm_token,
                requests_per_10s=self.requests_per_10s, searches_per_second=self.searches_per_second,
                max_concurrency=self.max_concurrency,
            )
        return self._client

    def _check(self, settings: Settings, url: str) -> None:
        from orchestration.crm_check import CrmCheckFailed, require_crm

        try:
            require_crm(settings, base_url=url)
        except CrmCheckFailed as exc:
            if exc.error.error_class == "transient" and exc.error.category != "unreachable":
                return   # it answers, if badly: the client's retries may get past it
            self._refused = (str(exc), exc.error.error_class)
            raise CrmRefused(*self._refused) from None


class ErpResource(ConfigurableResource):
    url: Optional[str] = None  # default: TRUEUP_ERP_URL or the sandbox SQLite file
    _engine = PrivateAttr(default=None)

    def engine(self):
        from connectors.erp_schema import make_erp_engine

        if self._engine is None:
            self._engine = make_erp_engine(self.url or load_settings().erp_url)
        return self._engine


class LandingResource(ConfigurableResource):
    path: Optional[str] = None  # default: TRUEUP_LANDING_DIR or $TRUEUP_HOME/landing

    def dir(self) -> Path:
        return Path(self.path) if self.path else load_settings().landing_dir


def default_resources() -> dict:
    return {
        "settings": SettingsResource(),
        "warehouse": WarehouseResource(),
        "crm": CrmResource(),
        "erp": ErpResource(),
        "landing": LandingResource(),
    }
