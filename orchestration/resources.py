"""Dagster resources. Each resolves its configuration from the environment when a run
starts (never at import), unless a test passes explicit values."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from dagster import ConfigurableResource
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


class CrmResource(ConfigurableResource):
    """The CRM API. The token is read from TRUEUP_CRM_TOKEN (or the sandbox) at run time and
    never appears in run config, logs or metadata."""

    base_url: Optional[str] = None
    requests_per_10s: int = 100
    searches_per_second: float = 5
    max_concurrency: int = 4
    _client = PrivateAttr(default=None)

    def client(self):
        from connectors.hubspot import HubSpotClient

        if self._client is None:
            settings = load_settings()
            self._client = HubSpotClient(
                self.base_url or settings.crm_base_url, settings.crm_token,
                requests_per_10s=self.requests_per_10s, searches_per_second=self.searches_per_second,
                max_concurrency=self.max_concurrency,
            )
        return self._client


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
