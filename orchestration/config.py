"""Trueup configuration: every setting comes from the environment, with embedded defaults.

`load_settings()` is called when a run, a command or a test starts — never at import
time — so that pointing the variables at other systems needs no code change.
The variable names are a fixed interface (shared/spec/config.md).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

# The embedded sandbox world: a baseline month of manual operation, then a month
# in which the platform posts orders (go-live on the first day of the second month).
DEFAULT_HISTORY_START = dt.date(2026, 9, 1)
DEFAULT_HISTORY_DAYS = 61
DEFAULT_SANDBOX_PORT = 8765
#: how often the intraday sensor asks the CRM for newly closed-won deals (TRUEUP_INTRADAY_INTERVAL_SECONDS)
DEFAULT_INTRADAY_INTERVAL_SECONDS = 120
MIN_INTRADAY_INTERVAL_SECONDS = 10


@dataclass(frozen=True)
class SandboxPaths:
    """Where the embedded sandbox keeps its state under TRUEUP_HOME."""

    root: Path

    @property
    def crm_db(self) -> Path:
        return self.root / "crm.sqlite"

    @property
    def erp_db(self) -> Path:
        return self.root / "erp.sqlite"

    @property
    def world_file(self) -> Path:
        return self.root / "world.json"

    @property
    def defects_file(self) -> Path:
        return self.root / "defects.json"

    @property
    def token_file(self) -> Path:
        return self.root / "crm_token"

    @property
    def pid_file(self) -> Path:
        return self.root / "crm.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "crm.log"

    def read_world(self) -> dict | None:
        """The seeded world's description (seed, scale, dates), or None if not seeded."""
        if not self.world_file.exists():
            return None
        return json.loads(self.world_file.read_text())

    def sandbox_token(self) -> str:
        """The sandbox CRM's bearer token: random, made once, kept in a 0600 file."""
        if self.token_file.exists():
            return self.token_file.read_text().strip()
        self.root.mkdir(parents=True, exist_ok=True)
        token = "sbx-" + secrets.token_urlsafe(24)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token)
        return token


@dataclass(frozen=True)
class Settings:
    home: Path
    warehouse_url: str
    erp_url: str
    landing_dir: Path
    crm_base_url: str
    crm_token_env: str | None = field(repr=False)  # never printed
    start_date: dt.date
    timezone: str
    publish_from: dt.date
    reporting_currency: str
    alert_webhook_url: str | None
    dagster_home: Path
    sandbox_port: int
    uses_sandbox_crm: bool
    write_alert_after_hours: float = 24.0   # a write failing transiently for longer is alerted on
    intraday: bool = False                  # TRUEUP_INTRADAY: the intraday sensor runs unless stopped
    intraday_interval_seconds: int = DEFAULT_INTRADAY_INTERVAL_SECONDS

    def __repr__(self) -> str:
        """Never a password: database URLs are shown with their credentials masked."""
        shown = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "crm_token_env"}
        shown["warehouse_url"], shown["erp_url"] = mask_url(self.warehouse_url), mask_url(self.erp_url)
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"

    __str__ = __repr__

    def make_home_private(self) -> None:
        """TRUEUP_HOME (and the Dagster home inside it) exist and are 0700: the warehouse holds PII."""
        for folder in (self.home, self.dagster_home):
            if folder == self.dagster_home and self.home not in folder.parents:
                continue
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(folder, 0o700)

    @property
    def crm_token(self) -> str:
        """The CRM bearer token: TRUEUP_CRM_TOKEN, else the sandbox's own (made on first use)."""
        if self.crm_token_env:
            return self.crm_token_env
        if not self.uses_sandbox_crm:
            raise ConfigError("TRUEUP_CRM_TOKEN must be set when TRUEUP_CRM_BASE_URL points at a real CRM")
        return self.sandbox.sandbox_token()

    @property
    def sandbox(self) -> SandboxPaths:
        return SandboxPaths(self.home / "sandbox")

    @property
    def warehouse_is_postgres(self) -> bool:
        return self.warehouse_url.startswith("postgresql")

    @property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @property
    def scratch_dir(self) -> Path:
        """Short-lived files of a running step (a gate's spilled keys); each step removes its own."""
        return self.home / "scratch"


def mask_url(url: str) -> str:
    """A database URL with any password replaced by ***."""
    import re

    return re.sub(r"(://[^/@:\s]*):[^/@\s]*@", r"\1:***@", url)


class ConfigError(ValueError):
    """A setting is present but unusable; the message names the variable."""


def _parse_date(name: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a date (expected YYYY-MM-DD)") from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Resolve the settings from `env` (default: os.environ)."""
    env = os.environ if env is None else env
    home = Path(env.get("TRUEUP_HOME") or "./.trueup").resolve()
    sandbox = SandboxPaths(home / "sandbox")
    world = sandbox.read_world() or {}

    history_start = dt.date.fromisoformat(world.get("start_date", DEFAULT_HISTORY_START.isoformat()))
    history_days = int(world.get("days", DEFAULT_HISTORY_DAYS))
    default_golive = world.get("golive_date") or (
        history_start + dt.timedelta(days=history_days // 2)
    ).isoformat()

    port = int(env.get("TRUEUP_SANDBOX_PORT") or DEFAULT_SANDBOX_PORT)
    crm_base_url = (env.get("TRUEUP_CRM_BASE_URL") or f"http://127.0.0.1:{port}").rstrip("/")
    uses_sandbox = not env.get("TRUEUP_CRM_BASE_URL")
    from connectors.errors import PermanentError
    from connectors.hubspot import require_safe_url

    try:
        require_safe_url(crm_base_url)
    except PermanentError as exc:
        raise ConfigError(str(exc)) from None

    warehouse_url = env.get("TRUEUP_WAREHOUSE_URL") or f"duckdb:///{home / 'warehouse.duckdb'}"
    if not (warehouse_url.startswith("duckdb:///") or warehouse_url.startswith("postgresql")):
        raise ConfigError(
            f"TRUEUP_WAREHOUSE_URL must start with duckdb:/// or postgresql:// (got {warehouse_url.split(':')[0]}:…)"
        )
    erp_url = env.get("TRUEUP_ERP_URL") or f"sqlite:///{sandbox.erp_db}"
    if not (erp_url.startswith("sqlite:///") or erp_url.startswith("postgresql")):
        raise ConfigError("TRUEUP_ERP_URL must be a sqlite:/// or postgresql:// SQLAlchemy URL")

    intraday, interval = intraday_settings(env)
    currency = (env.get("TRUEUP_REPORTING_CURRENCY") or "USD").upper()
    if len(currency) != 3 or not currency.isalpha():
        raise ConfigError(f"TRUEUP_REPORTING_CURRENCY={currency!r} is not an ISO-4217 code")

    return Settings(
        home=home,
        warehouse_url=warehouse_url,
        erp_url=erp_url,
        landing_dir=Path(env.get("TRUEUP_LANDING_DIR") or home / "landing").resolve(),
        crm_base_url=crm_base_url,
        crm_token_env=env.get("TRUEUP_CRM_TOKEN") or None,
        start_date=_parse_date("TRUEUP_START_DATE", env.get("TRUEUP_START_DATE") or history_start.isoformat()),
        timezone=env.get("TRUEUP_TIMEZONE") or "UTC",
        publish_from=_parse_date("TRUEUP_PUBLISH_FROM", env.get("TRUEUP_PUBLISH_FROM") or default_golive),
        reporting_currency=currency,
        alert_webhook_url=env.get("TRUEUP_ALERT_WEBHOOK_URL") or None,
        dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").resolve(),
        sandbox_port=port,
        uses_sandbox_crm=uses_sandbox,
        write_alert_after_hours=_parse_hours("TRUEUP_WRITE_ALERT_AFTER_HOURS",
                                             env.get("TRUEUP_WRITE_ALERT_AFTER_HOURS") or "24"),
        intraday=intraday, intraday_interval_seconds=interval,
    )


def intraday_settings(env: Mapping[str, str] | None = None) -> tuple[bool, int]:
    """(TRUEUP_INTRADAY on?, TRUEUP_INTRADAY_INTERVAL_SECONDS). Read when the code location loads:
    whether the intraday sensor runs by default and how often are part of the definitions (like the
    partitions); nothing else of the settings is read then. Off by default: the demo lives a
    simulated history, where "now" is not a business day; production configuration switches it on."""
    env = os.environ if env is None else env
    raw = (env.get("TRUEUP_INTRADAY") or "off").strip().lower()
    if raw in ("1", "on", "true", "yes"):
        on = True
    elif raw in ("0", "off", "false", "no"):
        on = False
    else:
        raise ConfigError(f"TRUEUP_INTRADAY={raw!r} must be on or off")
    value = env.get("TRUEUP_INTRADAY_INTERVAL_SECONDS") or str(DEFAULT_INTRADAY_INTERVAL_SECONDS)
    try:
        seconds = int(value)
    except ValueError:
        raise ConfigError(f"TRUEUP_INTRADAY_INTERVAL_SECONDS={value!r} is not a whole number of seconds") from None
    if seconds < MIN_INTRADAY_INTERVAL_SECONDS:
        raise ConfigError(f"TRUEUP_INTRADAY_INTERVAL_SECONDS={value!r} must be at least "
                          f"{MIN_INTRADAY_INTERVAL_SECONDS} (every evaluation is a CRM search)")
    return on, seconds


def _parse_hours(name: str, value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number of hours") from None
    if not hours >= 0 or hours == float("inf"):
        raise ConfigError(f"{name}={value!r} must be 0 or more hours")
    return hours
