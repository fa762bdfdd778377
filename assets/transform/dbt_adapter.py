"""The one adjustment of dbt's internals, applied only to the dbt-common release it was tested with.

Every dbt invocation renders its adapter's behaviour flags, and `BehaviorFlagRendered` names each
flag's source with `inspect.stack()`, even when the flag names its own source (the default of
`dict.get` is evaluated first). `inspect.stack()` reads the source lines of every frame on the
stack — inside a Dagster step, some 80 frames and their files — to return the first module that
is not `dbt_common.behavior_flags`. cProfile of tests/integration/test_rerun_stability.py: 20
calls, 3.1 of its 75 s.

`module_of_first_caller` finds the same module by walking the frames' globals, reading no file.
tests/unit/test_dbt_adapter.py compares it with stock dbt-common's answer. On a release not in
TESTED_VERSIONS dbt runs as shipped (slower, same flags) and one warning says so.
"""
from __future__ import annotations

import importlib.metadata
import sys
import warnings

#: the dbt-common releases (major, minor) the adjustment was checked against
TESTED_VERSIONS = {(1, 39)}
_BEHAVIOR_FLAGS_MODULE = "dbt_common.behavior_flags"


class UntestedDbtCommon(UserWarning):
    """A dbt-common release the adjustment was not tested with: dbt runs as shipped."""


def module_of_first_caller() -> str:
    """The name of the module of the nearest frame outside dbt_common.behavior_flags (what
    `BehaviorFlagRendered._default_source` returns), or "Unknown"."""
    frame = sys._getframe(1)
    while frame is not None:
        name = frame.f_globals.get("__name__")
        if name and name != _BEHAVIOR_FLAGS_MODULE:
            return name
        frame = frame.f_back
    return "Unknown"


def version_is_tested(version: str) -> bool:
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) in TESTED_VERSIONS


_WARNED: set[str] = set()


def adjust() -> bool:
    """Apply the adjustment (idempotent) where this dbt-common release was tested; True if applied."""
    from dbt_common.behavior_flags import BehaviorFlagRendered

    version = importlib.metadata.version("dbt-common")
    if not version_is_tested(version):
        if version not in _WARNED:
            _WARNED.add(version)
            warnings.warn(f"dbt-common {version} was not tested with Trueup's adjustment of its behaviour flags "
                          f"(tested: {', '.join(f'{a}.{b}' for a, b in sorted(TESTED_VERSIONS))}); dbt runs as "
                          f"shipped. Run tests/unit/test_dbt_adapter.py against it and add it to "
                          f"assets/transform/dbt_adapter.TESTED_VERSIONS.", UntestedDbtCommon, stacklevel=2)
        return False
    if not _STOCK:
        _STOCK.append(BehaviorFlagRendered.__dict__["_default_source"])
        BehaviorFlagRendered._default_source = staticmethod(module_of_first_caller)
    return True


_STOCK: list = []   # dbt-common's own _default_source, once replaced


def stock_default_source():
    """dbt-common's own `_default_source` (a staticmethod object), whether or not it was replaced."""
    from dbt_common.behavior_flags import BehaviorFlagRendered

    return _STOCK[0] if _STOCK else BehaviorFlagRendered.__dict__["_default_source"]
