"""The CRM check made before a run needs the CRM: one request, no retries, so that a run fails
in seconds with one clear line instead of retrying for minutes. `trueup nightly` / `backfill`
make it before they start a run, the `crm` resource before a run's first CRM call."""
from __future__ import annotations

from trueup.orchestration.config import Settings

#: what to do when nothing answers at the default CRM address (TRUEUP_CRM_BASE_URL unset):
#: that CRM is the local sandbox, which its own command starts
LOCAL_CRM_NOT_RUNNING = "sandbox CRM is not running at {url}: start it with `trueup sandbox up`"


class CrmCheckFailed(RuntimeError):
    """The CRM check failed; `error` is the classified failure (connectors.errors.SyncError)."""

    def __init__(self, message: str, error) -> None:
        super().__init__(message)
        self.error = error


def require_crm(settings: Settings, base_url: str | None = None) -> None:
    """Fail with one clear line when the CRM cannot be reached or refuses the token.
    `base_url` defaults to TRUEUP_CRM_BASE_URL. Raises CrmCheckFailed."""
    from trueup.connectors.errors import SyncError
    from trueup.connectors.hubspot import check_crm

    url = base_url or settings.crm_base_url
    try:
        # no token configured: the CRM's answer (a 401, or none at all) says more than a missing setting
        check_crm(url, settings.crm_token_if_set or "", timeout=3)
    except SyncError as exc:
        if settings.uses_sandbox_crm and url == settings.crm_base_url and exc.error_class == "transient" \
                and exc.status is None:
            raise CrmCheckFailed(LOCAL_CRM_NOT_RUNNING.format(url=url), exc) from None
        raise CrmCheckFailed(str(exc), exc) from None
