"""The settings a sandbox world implies for Trueup, kept in the settings file of the
TRUEUP_HOME the world lives in (its root is `$TRUEUP_HOME/sandbox`): the first daily partition
is the world's first day, orders are posted from its go-live, and `trueup backfill` without
dates covers the days lived so far. The environment still wins over them."""
from __future__ import annotations

import datetime as dt

from trueup.sandbox.generator.config import WorldConfig

#: the variables a world sets, cleared again when the world is reset
WORLD_VARIABLES = ("TRUEUP_START_DATE", "TRUEUP_PUBLISH_FROM", "TRUEUP_BACKFILL_END")


def write_world_settings(paths, cfg: WorldConfig, through: dt.date) -> None:
    """Record the world's dates (`paths`: the world's WorldPaths), lived through `through`."""
    _update(paths, {"TRUEUP_START_DATE": cfg.start_date.isoformat(), "TRUEUP_PUBLISH_FROM": cfg.golive.isoformat(),
                    "TRUEUP_BACKFILL_END": through.isoformat()})


def clear_world_settings(paths) -> None:
    _update(paths, dict.fromkeys(WORLD_VARIABLES))


def _update(paths, values: dict) -> None:
    from trueup.orchestration.config import settings_file, update_settings_file

    update_settings_file(settings_file(paths.root.parent), values)
