"""Dagster resources. The configuration reaches them by one route: the `settings` resource, whose
fields are the environment variables (README: Configuration), resolved once per run by
orchestration.config.load_settings; the warehouse, CRM, ERP and landing resources take what they
need from it.

In the code location (`default_resources`) each variable set in the environment is an
`EnvVar` field of `settings`: the UI shows the variable's name, never its value (tokens and
database passwords stay out of resource config, logs and metadata), and Dagster reads the value
when a run starts. What the environment leaves unset comes, as always, from
$TRUEUP_HOME/trueup.env, then the defaults. Nothing is read at import."""
# no `from __future__ import annotations`: Dagster reads the fields' annotations to find the
# resource dependencies
import contextlib
import os
from pathlib import Path
from typing import Iterator, Mapping, Optional

from dagster import ConfigurableResource, EnvVar, Failure, ResourceDependency
from pydantic import Field, PrivateAttr

from trueup.orchestration.config import Settings, load_settings
from trueup.orchestration.warehouse_session import connect_warehouse, warehouse_session

#: each field of the settings resource and the variable it stands for
VARIABLES = {
    "home": "TRUEUP_HOME",
    "warehouse_url": "TRUEUP_WAREHOUSE_URL",
    "erp_url": "TRUEUP_ERP_URL",
    "landing_dir": "TRUEUP_LANDING_DIR",
    "crm_base_url": "TRUEUP_CRM_BASE_URL",
    "crm_token": "TRUEUP_CRM_TOKEN",
    "crm_token_file": "TRUEUP_CRM_TOKEN_FILE",
    "start_date": "TRUEUP_START_DATE",
    "timezone": "TRUEUP_TIMEZONE",
    "publish_from": "TRUEUP_PUBLISH_FROM",
    "backfill_end": "TRUEUP_BACKFILL_END",
    "reporting_currency": "TRUEUP_REPORTING_CURRENCY",
    "alert_webhook_url": "TRUEUP_ALERT_WEBHOOK_URL",
    "dagster_home": "DAGSTER_HOME",
    "sandbox_port": "TRUEUP_SANDBOX_PORT",
    "write_alert_after_hours": "TRUEUP_WRITE_ALERT_AFTER_HOURS",
    "intraday": "TRUEUP_INTRADAY",
    "intraday_interval_seconds": "TRUEUP_INTRADAY_INTERVAL_SECONDS",
    "crm_requests_per_10s": "TRUEUP_CRM_REQUESTS_PER_10S",
    "crm_searches_per_second": "TRUEUP_CRM_SEARCHES_PER_SECOND",
    "gx_data_docs": "TRUEUP_GX_DATA_DOCS",
    "nightly_at": "TRUEUP_NIGHTLY_AT",
    "executor": "TRUEUP_EXECUTOR",
}


def _variable(name: str, meaning: str):
    return Field(default=None, description=f"{name}: {meaning}")


class SettingsResource(ConfigurableResource):
    """The configuration of a run (orchestration/config.py): one field per environment variable.
    A field left unset takes its variable from the environment, else $TRUEUP_HOME/trueup.env,
    else the default; a field given a value (the launchpad, a test) stands in for its variable."""

    home: Optional[str] = _variable("TRUEUP_HOME", "folder of all local state")
    warehouse_url: Optional[str] = _variable("TRUEUP_WAREHOUSE_URL", "duckdb:///path or postgresql://…")
    erp_url: Optional[str] = _variable("TRUEUP_ERP_URL", "ERP database, SQLAlchemy URL")
    landing_dir: Optional[str] = _variable("TRUEUP_LANDING_DIR", "where the ERP drops exports/<date>/")
    crm_base_url: Optional[str] = _variable("TRUEUP_CRM_BASE_URL", "CRM API base URL")
    crm_token: Optional[str] = _variable("TRUEUP_CRM_TOKEN", "CRM bearer token (a secret)")
    crm_token_file: Optional[str] = _variable("TRUEUP_CRM_TOKEN_FILE", "a file holding the CRM token")
    start_date: Optional[str] = _variable("TRUEUP_START_DATE", "first daily partition")
    timezone: Optional[str] = _variable("TRUEUP_TIMEZONE", "business time zone")
    publish_from: Optional[str] = _variable("TRUEUP_PUBLISH_FROM", "go-live date")
    backfill_end: Optional[str] = _variable("TRUEUP_BACKFILL_END", "last day of `trueup backfill`")
    reporting_currency: Optional[str] = _variable("TRUEUP_REPORTING_CURRENCY", "currency of money in marts")
    alert_webhook_url: Optional[str] = _variable("TRUEUP_ALERT_WEBHOOK_URL", "where run-failure alerts are POSTed")
    dagster_home: Optional[str] = _variable("DAGSTER_HOME", "Dagster instance folder")
    sandbox_port: Optional[str] = _variable("TRUEUP_SANDBOX_PORT", "port of the local sandbox CRM")
    write_alert_after_hours: Optional[str] = _variable("TRUEUP_WRITE_ALERT_AFTER_HOURS",
                                                       "a write failing longer is alerted on")
    intraday: Optional[str] = _variable("TRUEUP_INTRADAY", "the intraday sensor runs (on/off)")
    intraday_interval_seconds: Optional[str] = _variable("TRUEUP_INTRADAY_INTERVAL_SECONDS",
                                                         "how often the intraday sensor looks")
    crm_requests_per_10s: Optional[str] = _variable("TRUEUP_CRM_REQUESTS_PER_10S",
                                                    "the CRM's limit of requests per rolling 10 s")
    crm_searches_per_second: Optional[str] = _variable("TRUEUP_CRM_SEARCHES_PER_SECOND",
                                                       "the CRM's limit of searches per second")
    gx_data_docs: Optional[str] = _variable("TRUEUP_GX_DATA_DOCS",
                                            "gate results kept and rendered as GX Data Docs (on/off)")
    nightly_at: Optional[str] = _variable("TRUEUP_NIGHTLY_AT", "when the nightly run starts (HH:MM, business time zone)")
    executor: Optional[str] = _variable("TRUEUP_EXECUTOR", "how launched runs execute their steps "
                                        "(in_process, multiprocess, celery; read when the code location loads)")
    _settings: Optional[Settings] = PrivateAttr(default=None)

    def get(self) -> Settings:
        """The settings, resolved on first use and then the same for the whole run: Dagster gives
        every run (and every sensor tick) an instance of its own, shared by the other resources."""
        if self._settings is None:
            self._settings = load_settings(self._environment())
        return self._settings

    def _environment(self) -> dict[str, str]:
        # an EnvVar field holds its variable's own value; a value given in config overrides it
        configured = {VARIABLES[f]: getattr(self, f) for f in VARIABLES if getattr(self, f) is not None}
        return {**os.environ, **configured}


def environment_fields(env: Mapping[str, str] | None = None) -> dict[str, EnvVar]:
    """The settings resource's fields for the variables set (non-empty) in `env` (default:
    os.environ), each as an EnvVar: named in the UI, read when a run starts."""
    env = os.environ if env is None else env
    return {field: EnvVar(name) for field, name in VARIABLES.items() if env.get(name)}


class UsesSettings(ConfigurableResource):
    """A resource configured by the settings resource. In a run, `settings` is the run's (one
    resolution for all); used on its own (a test, a script) the resource resolves its own."""

    settings: ResourceDependency[SettingsResource] = None
    _own_settings: Optional[Settings] = PrivateAttr(default=None)

    def resolved_settings(self) -> Settings:
        if isinstance(self.settings, SettingsResource):
            return self.settings.get()
        # outside a run the dependency is not set up (None, or the code location's unbound one)
        if self._own_settings is None:
            self._own_settings = SettingsResource().get()
        return self._own_settings


class WarehouseResource(UsesSettings):
    url: Optional[str] = None  # default: the settings' (TRUEUP_WAREHOUSE_URL or the DuckDB file under TRUEUP_HOME)
    _wh = PrivateAttr(default=None)

    def get(self):
        """The run's warehouse (one for the run). On DuckDB it keeps the file open from one writing
        step to the next (Warehouse.held_open) until the run's end (teardown_after_execution)."""
        if self._wh is None:
            url = self._url()
            if url.startswith("duckdb:///"):
                Path(url.removeprefix("duckdb:///")).parent.mkdir(parents=True, exist_ok=True)
            self._wh = connect_warehouse(url)
            self._wh.keep_between_blocks = True
        return self._wh

    def teardown_after_execution(self, context) -> None:
        if self._wh is not None:
            self._wh.release()   # the file is other processes' again

    def session(self, lock_timeout_s: float | None = None):
        """A warehouse of its own for one short look (a sensor's tick), disposed when the block
        ends; `lock_timeout_s`: how long to wait for DuckDB's lock (default 120 s)."""
        return warehouse_session(self._url(), lock_timeout_s)

    def _url(self) -> str:
        return self.url or self.resolved_settings().warehouse_url


class CrmRefused(Failure):
    """The run's CRM check failed: one line, not retried; classified (ops.sync_runs.error_class)
    as the check's own failure was — permanent for a refused token, transient for no answer."""

    def __init__(self, reason: str, error_class: str) -> None:
        super().__init__(description=reason, allow_retries=False)
        self.error_class = error_class


def shared_crm_budget(settings: Settings, url: str):
    """The CRM rate budget this process shares with every other one calling the same CRM
    (connectors/shared_budget.py): in the PostgreSQL warehouse when it is one (processes on any
    machine), else a file in the Trueup home (one machine)."""
    from trueup.connectors.shared_budget import FileBudget, PostgresBudget, budget_key

    key = budget_key(url, settings.crm_token)
    if not settings.warehouse_url.startswith("postgresql"):
        return FileBudget(settings.home / "state", key)
    # one engine per warehouse and budget in a process: a sensor makes a client every tick
    cached = _PG_BUDGETS.get((settings.warehouse_url, key))
    if cached is None:
        from trueup.connectors.warehouse import Warehouse

        cached = _PG_BUDGETS[(settings.warehouse_url, key)] = PostgresBudget(Warehouse(settings.warehouse_url).engine,
                                                                             key)
    return cached


_PG_BUDGETS: dict = {}


class CrmResource(UsesSettings):
    """The CRM API. The token comes from TRUEUP_CRM_TOKEN (or TRUEUP_CRM_TOKEN_FILE) through the
    settings at run time and never appears in run config, logs or metadata.

    The first `client()` of a run checks the CRM once — the check `trueup nightly` makes before
    it starts a run (orchestration.crm_check.require_crm: one request, no retries) — so a run
    launched from the UI, the schedule or a sensor fails in seconds with one line too, instead
    of retrying for minutes: a refused token (401/403), a URL that is no CRM API, or nothing
    answering at the address fails the step with a `dagster.Failure` (CrmRefused) that is not
    retried. A CRM that answers but badly (5xx, a dropped connection) is left to the client's
    retries."""

    base_url: Optional[str] = None
    #: the portal's limits; unset: TRUEUP_CRM_REQUESTS_PER_10S / TRUEUP_CRM_SEARCHES_PER_SECOND
    requests_per_10s: Optional[int] = None
    searches_per_second: Optional[float] = None
    max_concurrency: int = 4
    check_first: bool = True   # the one-request check before the first use in a run
    _client = PrivateAttr(default=None)
    _refused = PrivateAttr(default=None)   # (one-line reason, error class), kept for the run's other steps

    def client(self):
        if self._refused is not None:
            raise CrmRefused(*self._refused)
        if self._client is None:
            settings = self.resolved_settings()
            url = self.base_url or settings.crm_base_url
            if self.check_first:
                self._check(settings, url)
            self._client = self._new_client(settings, url)
        return self._client

    @contextlib.contextmanager
    def quick_client(self, *, max_retries: int, timeout: float) -> Iterator:
        """A client of its own for one quick look between runs (a sensor's tick): no check first,
        its own retries and timeout, closed when the block ends."""
        settings = self.resolved_settings()
        client = self._new_client(settings, self.base_url or settings.crm_base_url,
                                  max_retries=max_retries, timeout=timeout)
        try:
            yield client
        finally:
            client.close()

    def _new_client(self, settings: Settings, url: str, **options):
        from trueup.connectors.hubspot import HubSpotClient

        return HubSpotClient(url, settings.crm_token,
                             requests_per_10s=self.requests_per_10s or settings.crm_requests_per_10s,
                             searches_per_second=self.searches_per_second or settings.crm_searches_per_second,
                             max_concurrency=self.max_concurrency,
                             shared_budget=shared_crm_budget(settings, url), **options)

    def _check(self, settings: Settings, url: str) -> None:
        from trueup.orchestration.crm_check import CrmCheckFailed, require_crm

        try:
            require_crm(settings, base_url=url)
        except CrmCheckFailed as exc:
            if exc.error.error_class == "transient" and exc.error.category != "unreachable":
                return   # it answers, if badly: the client's retries may get past it
            self._refused = (str(exc), exc.error.error_class)
            raise CrmRefused(*self._refused) from None


class ErpResource(UsesSettings):
    url: Optional[str] = None  # default: the settings' (TRUEUP_ERP_URL or the sandbox SQLite file)
    _engine = PrivateAttr(default=None)

    def engine(self):
        from trueup.connectors.erp_schema import make_erp_engine

        if self._engine is None:
            self._engine = make_erp_engine(self.url or self.resolved_settings().erp_url)
        return self._engine


class LandingResource(UsesSettings):
    path: Optional[str] = None  # default: the settings' (TRUEUP_LANDING_DIR or $TRUEUP_HOME/landing)

    def dir(self) -> Path:
        return Path(self.path) if self.path else self.resolved_settings().landing_dir


def default_resources() -> dict:
    """The code location's resources: one settings resource — its fields the variables set in the
    environment now, as EnvVars — on which the others depend (Dagster sets it up once per run and
    hands the same instance to each of them)."""
    settings = SettingsResource.configure_at_launch(**environment_fields())
    return {
        "settings": settings,
        "warehouse": WarehouseResource(settings=settings),
        "crm": CrmResource(settings=settings),
        "erp": ErpResource(settings=settings),
        "landing": LandingResource(settings=settings),
    }
