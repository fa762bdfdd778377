"""Where the sandbox keeps its state: `$TRUEUP_HOME/sandbox`."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from trueup.orchestration.config import Settings, settings_file, update_settings_file


@dataclass(frozen=True)
class SandboxPaths:
    root: Path

    @classmethod
    def of(cls, settings: Settings) -> "SandboxPaths":
        return cls(settings.home / "sandbox")

    @property
    def home(self) -> Path:
        """The TRUEUP_HOME the sandbox lives in."""
        return self.root.parent

    @property
    def token_file(self) -> Path:
        return self.root / "crm_token"

    @property
    def pid_file(self) -> Path:
        return self.root / "crm.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "crm.log"

    @property
    def crm_db(self) -> Path:
        return self.root / "crm.sqlite"

    def sandbox_token(self) -> str:
        """The sandbox CRM's bearer token: random, made once, kept in a 0600 file, which the
        TRUEUP_HOME's settings file names as TRUEUP_CRM_TOKEN_FILE for Trueup to read."""
        if self.token_file.exists():
            token = self.token_file.read_text().strip()
        else:
            self.root.mkdir(parents=True, exist_ok=True)
            token = "sbx-" + secrets.token_urlsafe(24)
            fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(token)
        update_settings_file(settings_file(self.home), {"TRUEUP_CRM_TOKEN_FILE": str(self.token_file)})
        return token


def client_token(settings: Settings) -> str:
    """The token Trueup sends the CRM: the one configured, else the sandbox's own (made on first use)."""
    return settings.crm_token_if_set or SandboxPaths.of(settings).sandbox_token()
