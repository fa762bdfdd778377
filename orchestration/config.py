"""Trueup configuration: every setting comes from the environment, with embedded defaults.

`load_settings()` is called when a run, a command or a test starts — never at import
time — so that pointing the variables at other systems needs no code change.
The variable names are a fixed interface (README: Configuration).

What the environment leaves unset (or empty) may come from the settings file of the
TRUEUP_HOME, `$TRUEUP_HOME/trueup.env`: one `VARIABLE=value` per line, `#` comments, private
to its user (0600). It holds the same variables as the environment — except `TRUEUP_HOME`,
which locates it, and `TRUEUP_CRM_TOKEN`: a secret never sits in a settings file, point
`TRUEUP_CRM_TOKEN_FILE` at a file holding it instead. Tools that set up a home write there
(the sandbox commands record their world's dates and their CRM token file); the environment
always wins. What neither sets takes the plain defaults below.
"""
from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from trueup.connectors.clock import NIGHTLY_AT

# Embedded defaults: the demo world's history (a baseline month, go-live on the first day of
# the second month) and the local CRM on this machine.
DEFAULT_START_DATE = dt.date(2026, 9, 1)
DEFAULT_PUBLISH_FROM = dt.date(2026, 10, 1)
DEFAULT_SANDBOX_PORT = 8765
#: the CRM portal's API limits (HubSpot's defaults; the sandbox's too): requests in a rolling
#: ten-second window, and searches per second. A portal with higher limits sets its own.
DEFAULT_CRM_REQUESTS_PER_10S = 100
DEFAULT_CRM_SEARCHES_PER_SECOND = 5.0
#: how often the intraday sensor asks the CRM for newly closed-won deals (TRUEUP_INTRADAY_INTERVAL_SECONDS)
DEFAULT_INTRADAY_INTERVAL_SECONDS = 120
MIN_INTRADAY_INTERVAL_SECONDS = 10
#: when the nightly schedule runs (TRUEUP_NIGHTLY_AT, business time zone), for the previous day
DEFAULT_NIGHTLY_AT = NIGHTLY_AT

SETTINGS_FILE_NAME = "trueup.env"
#: the variables a settings file may set: those load_settings resolves, but for TRUEUP_HOME and the token
FILE_SETTINGS = frozenset({
    "TRUEUP_WAREHOUSE_URL", "TRUEUP_ERP_URL", "TRUEUP_LANDING_DIR", "TRUEUP_CRM_BASE_URL", "TRUEUP_CRM_TOKEN_FILE",
    "TRUEUP_START_DATE", "TRUEUP_TIMEZONE", "TRUEUP_PUBLISH_FROM", "TRUEUP_BACKFILL_END",
    "TRUEUP_REPORTING_CURRENCY", "TRUEUP_ALERT_WEBHOOK_URL", "DAGSTER_HOME", "TRUEUP_SANDBOX_PORT",
    "TRUEUP_WRITE_ALERT_AFTER_HOURS", "TRUEUP_INTRADAY", "TRUEUP_INTRADAY_INTERVAL_SECONDS",
    "TRUEUP_CRM_REQUESTS_PER_10S", "TRUEUP_CRM_SEARCHES_PER_SECOND", "TRUEUP_GX_DATA_DOCS", "TRUEUP_NIGHTLY_AT",
    "TRUEUP_EXECUTOR",
})


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
    uses_sandbox_crm: bool                  # TRUEUP_CRM_BASE_URL unset: the local CRM on 127.0.0.1:sandbox_port
    write_alert_after_hours: float = 24.0   # a write failing transiently for longer is alerted on
    intraday: bool = False                  # TRUEUP_INTRADAY: the intraday sensor runs unless stopped
    intraday_interval_seconds: int = DEFAULT_INTRADAY_INTERVAL_SECONDS
    crm_token_file: Path | None = None      # TRUEUP_CRM_TOKEN_FILE: a file holding the token (read when needed)
    backfill_end: dt.date | None = None     # TRUEUP_BACKFILL_END: last day of `trueup backfill` without --end
    crm_requests_per_10s: int = DEFAULT_CRM_REQUESTS_PER_10S           # TRUEUP_CRM_REQUESTS_PER_10S
    crm_searches_per_second: float = DEFAULT_CRM_SEARCHES_PER_SECOND   # TRUEUP_CRM_SEARCHES_PER_SECOND
    gx_data_docs: bool = True               # TRUEUP_GX_DATA_DOCS: gate results kept and rendered as GX Data Docs
    nightly_at: dt.time = DEFAULT_NIGHTLY_AT  # TRUEUP_NIGHTLY_AT: the nightly run's time, business time zone
    executor: str = "in_process"            # TRUEUP_EXECUTOR: how launched runs execute their steps

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
        """The CRM bearer token: TRUEUP_CRM_TOKEN, else the content of TRUEUP_CRM_TOKEN_FILE."""
        token = self.crm_token_if_set
        if token:
            return token
        if not self.uses_sandbox_crm:
            raise ConfigError("TRUEUP_CRM_TOKEN must be set when TRUEUP_CRM_BASE_URL points at a real CRM")
        raise ConfigError("no CRM token: set TRUEUP_CRM_TOKEN or TRUEUP_CRM_TOKEN_FILE "
                          "(`trueup sandbox up` makes the local sandbox's)")

    @property
    def crm_token_if_set(self) -> str | None:
        """TRUEUP_CRM_TOKEN, else the content of TRUEUP_CRM_TOKEN_FILE, else None."""
        if self.crm_token_env:
            return self.crm_token_env
        if self.crm_token_file is None:
            return None
        try:
            token = self.crm_token_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"TRUEUP_CRM_TOKEN_FILE={self.crm_token_file} cannot be read "
                              f"({exc.strerror or type(exc).__name__})") from None
        if not token:
            raise ConfigError(f"TRUEUP_CRM_TOKEN_FILE={self.crm_token_file} is empty")
        return token

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
    return re.sub(r"(://[^/@:\s]*):[^/@\s]*@", r"\1:***@", url)


class ConfigError(ValueError):
    """A setting is present but unusable; the message names the variable."""


def _parse_date(name: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a date (expected YYYY-MM-DD)") from None


def settings_file(home: Path) -> Path:
    """The settings file of a TRUEUP_HOME."""
    return home / SETTINGS_FILE_NAME


def home_folder(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    return Path(env.get("TRUEUP_HOME") or "./.trueup").resolve()


def read_settings_file(path: Path) -> dict[str, str]:
    """The variables a settings file sets ({} when there is none). A line that is no
    `VARIABLE=value`, or a variable the file may not set, is a ConfigError naming the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise ConfigError(f"{path}:{number}: expected VARIABLE=value")
        if name == "TRUEUP_CRM_TOKEN":
            raise ConfigError(f"{path}:{number}: TRUEUP_CRM_TOKEN is a secret: set it in the environment, "
                              f"or put the token in a file of its own and set TRUEUP_CRM_TOKEN_FILE")
        if name not in FILE_SETTINGS:
            raise ConfigError(f"{path}:{number}: {name} cannot be set in {SETTINGS_FILE_NAME}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[name] = value
    return values


def update_settings_file(path: Path, values: Mapping[str, str | None]) -> None:
    """Set (or, for None, remove) variables in a settings file, keeping its other lines; the
    file is created private (0600) and replaced whole, so a reader never sees half of it."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        if all(value is None for value in values.values()):
            return   # nothing to set, nothing to remove
        lines = ["# Trueup settings for this TRUEUP_HOME: VARIABLE=value; the environment overrides them"]
    pending = dict(values)
    kept = []
    for line in lines:
        name = line.partition("=")[0].strip()
        if "=" not in line or line.lstrip().startswith("#") or name not in values:
            kept.append(line)
        elif name in pending:   # the variable's first line takes the new value; a repeat of it goes
            value = pending.pop(name)
            if value is not None:
                kept.append(f"{name}={value}")
    kept += [f"{name}={value}" for name, value in pending.items() if value is not None]
    text = "\n".join(kept) + "\n"
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def settings_sources(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Every setting's value: the environment's (default os.environ), and for what it leaves
    unset or empty, the settings file's of its TRUEUP_HOME."""
    env = os.environ if env is None else env
    merged = read_settings_file(settings_file(home_folder(env)))
    merged.update({name: value for name, value in env.items() if value})
    return merged


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Resolve the settings from `env` (default: os.environ) and the TRUEUP_HOME's settings file."""
    env = settings_sources(env)
    home = home_folder(env)

    port = int(env.get("TRUEUP_SANDBOX_PORT") or DEFAULT_SANDBOX_PORT)
    crm_base_url = (env.get("TRUEUP_CRM_BASE_URL") or f"http://127.0.0.1:{port}").rstrip("/")
    uses_sandbox = not env.get("TRUEUP_CRM_BASE_URL")
    from trueup.connectors.errors import PermanentError
    from trueup.connectors.hubspot import require_safe_url

    try:
        require_safe_url(crm_base_url)
    except PermanentError as exc:
        raise ConfigError(str(exc)) from None

    warehouse_url = env.get("TRUEUP_WAREHOUSE_URL") or f"duckdb:///{home / 'warehouse.duckdb'}"
    if not (warehouse_url.startswith("duckdb:///") or warehouse_url.startswith("postgresql")):
        raise ConfigError(
            f"TRUEUP_WAREHOUSE_URL must start with duckdb:/// or postgresql:// (got {warehouse_url.split(':')[0]}:…)"
        )
    erp_url = env.get("TRUEUP_ERP_URL") or f"sqlite:///{home / 'sandbox' / 'erp.sqlite'}"
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
        start_date=_parse_date("TRUEUP_START_DATE", env.get("TRUEUP_START_DATE") or DEFAULT_START_DATE.isoformat()),
        timezone=env.get("TRUEUP_TIMEZONE") or "UTC",
        publish_from=_parse_date("TRUEUP_PUBLISH_FROM",
                                 env.get("TRUEUP_PUBLISH_FROM") or DEFAULT_PUBLISH_FROM.isoformat()),
        reporting_currency=currency,
        alert_webhook_url=env.get("TRUEUP_ALERT_WEBHOOK_URL") or None,
        dagster_home=Path(env.get("DAGSTER_HOME") or home / "dagster").resolve(),
        sandbox_port=port,
        uses_sandbox_crm=uses_sandbox,
        write_alert_after_hours=_parse_hours("TRUEUP_WRITE_ALERT_AFTER_HOURS",
                                             env.get("TRUEUP_WRITE_ALERT_AFTER_HOURS") or "24"),
        intraday=intraday, intraday_interval_seconds=interval,
        crm_token_file=Path(env["TRUEUP_CRM_TOKEN_FILE"]).expanduser().resolve()
        if env.get("TRUEUP_CRM_TOKEN_FILE") else None,
        backfill_end=_parse_date("TRUEUP_BACKFILL_END", env["TRUEUP_BACKFILL_END"])
        if env.get("TRUEUP_BACKFILL_END") else None,
        crm_requests_per_10s=int(_parse_rate("TRUEUP_CRM_REQUESTS_PER_10S", env.get("TRUEUP_CRM_REQUESTS_PER_10S"),
                                             DEFAULT_CRM_REQUESTS_PER_10S, whole=True)),
        crm_searches_per_second=_parse_rate("TRUEUP_CRM_SEARCHES_PER_SECOND",
                                            env.get("TRUEUP_CRM_SEARCHES_PER_SECOND"), DEFAULT_CRM_SEARCHES_PER_SECOND),
        gx_data_docs=_on_off("TRUEUP_GX_DATA_DOCS", env.get("TRUEUP_GX_DATA_DOCS"), default=True),
        nightly_at=nightly_at(env),
        executor=executor_setting(env),
    )


def _on_off(name: str, value: str | None, default: bool) -> bool:
    raw = (value or "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "on", "true", "yes"):
        return True
    if raw in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name}={raw!r} must be on or off")


def _parse_rate(name: str, value: str | None, default: float, whole: bool = False) -> float:
    """A CRM rate limit: a positive number (a whole one where `whole`), else the default."""
    if not value:
        return default
    try:
        rate = int(value) if whole else float(value)
    except ValueError:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{name}={value!r} is not {kind}") from None
    if not rate > 0:
        raise ConfigError(f"{name}={value!r} must be above 0")
    return rate


def intraday_settings(env: Mapping[str, str] | None = None) -> tuple[bool, int]:
    """(TRUEUP_INTRADAY on?, TRUEUP_INTRADAY_INTERVAL_SECONDS). Read when the code location loads:
    whether the intraday sensor runs by default and how often are part of the definitions (like the
    partitions); nothing else of the settings is read then. Off by default: the demo lives a
    simulated history, where "now" is not a business day; production configuration switches it on."""
    env = settings_sources() if env is None else env
    on = _on_off("TRUEUP_INTRADAY", env.get("TRUEUP_INTRADAY"), default=False)
    value = env.get("TRUEUP_INTRADAY_INTERVAL_SECONDS") or str(DEFAULT_INTRADAY_INTERVAL_SECONDS)
    try:
        seconds = int(value)
    except ValueError:
        raise ConfigError(f"TRUEUP_INTRADAY_INTERVAL_SECONDS={value!r} is not a whole number of seconds") from None
    if seconds < MIN_INTRADAY_INTERVAL_SECONDS:
        raise ConfigError(f"TRUEUP_INTRADAY_INTERVAL_SECONDS={value!r} must be at least "
                          f"{MIN_INTRADAY_INTERVAL_SECONDS} (every evaluation is a CRM search)")
    return on, seconds


def nightly_at(env: Mapping[str, str] | None = None) -> dt.time:
    """TRUEUP_NIGHTLY_AT, HH:MM in the business time zone (default 02:00): when the nightly schedule
    runs for the previous day, and so the business clock a night's writes are stamped with
    (assets/publish/business_time.py). Read when the code location loads, like the partitions."""
    env = settings_sources() if env is None else env
    value = (env.get("TRUEUP_NIGHTLY_AT") or "").strip()
    if not value:
        return DEFAULT_NIGHTLY_AT
    match = re.fullmatch(r"([01]?[0-9]|2[0-3]):([0-5][0-9])", value)
    if not match:
        raise ConfigError(f"TRUEUP_NIGHTLY_AT={value!r} must be a time of day as HH:MM (e.g. 02:00)")
    return dt.time(int(match.group(1)), int(match.group(2)))


#: how the runs Dagster launches execute their steps (orchestration/executors.py)
EXECUTORS = ("in_process", "multiprocess", "celery")


def executor_setting(env: Mapping[str, str] | None = None) -> str:
    """TRUEUP_EXECUTOR, checked against the warehouse it would write to. Read when the code
    location loads (the jobs' executor is part of the definitions), like the partitions."""
    env = settings_sources() if env is None else env
    name = (env.get("TRUEUP_EXECUTOR") or "in_process").strip().lower().replace("-", "_")
    if name not in EXECUTORS:
        raise ConfigError(f"TRUEUP_EXECUTOR={name!r} must be one of {', '.join(EXECUTORS)}")
    warehouse = env.get("TRUEUP_WAREHOUSE_URL") or "duckdb:///"
    if name != "in_process" and warehouse.startswith("duckdb"):
        raise ConfigError(f"TRUEUP_EXECUTOR={name} needs a PostgreSQL warehouse: DuckDB admits one writing "
                          "process at a time (keep in_process, or set TRUEUP_WAREHOUSE_URL=postgresql://…)")
    # the broker is environment only: Dagster and the workers read it from there
    if name == "celery" and not (env.get("TRUEUP_CELERY_BROKER") or os.environ.get("TRUEUP_CELERY_BROKER")):
        raise ConfigError("TRUEUP_EXECUTOR=celery needs TRUEUP_CELERY_BROKER (e.g. redis://127.0.0.1:6379/0)")
    return name


def _parse_hours(name: str, value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number of hours") from None
    if not hours >= 0 or hours == float("inf"):
        raise ConfigError(f"{name}={value!r} must be 0 or more hours")
    return hours
