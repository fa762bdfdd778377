"""Great Expectations as the gate uses it: the one way in, and every adjustment of GX's
internals, applied only to the GX versions they were tested with.

The gate's code imports GX through `import_gx()`: it turns GX's analytics off before the first
import, defers SciPy's statistics until something uses them (`scipy_stats_on_first_use`) and
refuses a major version other than 1 (the suites are written against GX 1.x).

The adjustments make GX faster and change nothing it checks or counts —
tests/unit/test_gx_adapter.py validates every kind of rule with and without them and compares
the unexpected rows and counts:

1. no data fingerprint (`skip_data_fingerprint`): GX md5-hashes every pandas batch below 1 GB
   for a marker in the result's metadata, 60 % of a chunk's validation;
2. each expectation's configuration built from fields read once per validation
   (`configurations_once_per_validation`), not ~80 times;
3. no progress bars on the gate's context (`quiet_progress_bars`);
4. Data Docs templates compiled once per process (`templates_compiled_once`): GX makes a new
   Jinja environment for every page it renders, and compiling its ~36 templates again was most
   of a gate step's Data Docs time (0.37 of ~0.5 s, cProfile). Jinja's own bytecode cache, keyed
   by template name and source checksum: the pages are the same, byte for byte.

They reach into GX's private modules, which any release may change. So they are applied only
on a major.minor in TESTED_VERSIONS; on another 1.x the gate warns once (`UntestedGxVersion`)
and runs GX as shipped — slower, with the same counts. To support a new release: run
tests/unit/test_gx_adapter.py and tests/unit/test_contracts.py against it, then add it here.
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import threading
import types
import warnings

# the GX releases the adjustments below were checked against (tests/unit/test_gx_adapter.py)
TESTED_VERSIONS = {(1, 24)}
SUPPORTED_MAJOR = 1


class GxVersionError(RuntimeError):
    """A Great Expectations major version the gate's suites are not written for."""


class UntestedGxVersion(UserWarning):
    """A GX 1.x release the adjustments were not tested with: GX runs as shipped."""


def import_gx():
    """`great_expectations`, imported with its analytics off, once its major version is known
    to be one the suites are written for."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    if "great_expectations" not in sys.modules:
        scipy_stats_on_first_use()
    import great_expectations as gx

    version_is_tested(gx.__version__)
    return gx


def version_is_tested(version: str) -> bool:
    """True on a tested major.minor, False on another 1.x; GxVersionError on another major."""
    major, minor = (int(part) for part in version.split(".")[:2])
    if major != SUPPORTED_MAJOR:
        raise GxVersionError(f"great_expectations {version} is installed; the gate's contracts are written for "
                             f"GX {SUPPORTED_MAJOR}.x (pyproject.toml pins great-expectations<2)")
    return (major, minor) in TESTED_VERSIONS


class _ModuleOnFirstUse(types.ModuleType):
    """Stands in for a module in `sys.modules` until one of its attributes is read; the module is
    then imported (once, under a lock: the gate validates in threads) and every read goes to it."""

    def __init__(self, name: str, spec) -> None:
        super().__init__(name)
        self.__spec__ = spec   # what importlib's find_spec answers for the name, as for the module
        self.__dict__["_first_use_lock"] = threading.Lock()
        self.__dict__["_module"] = None

    def __getattr__(self, attribute: str):   # only for what the stand-in itself does not have
        module = self.__dict__["_module"]
        if module is None:
            with self.__dict__["_first_use_lock"]:
                module = self.__dict__["_module"]
                if module is None:
                    if sys.modules.get(self.__name__) is self:
                        del sys.modules[self.__name__]
                    module = self.__dict__["_module"] = importlib.import_module(self.__name__)
        return getattr(module, attribute)


def scipy_stats_on_first_use() -> None:
    """GX imports all its core expectations when it is imported; three of them (the KL divergence
    and the two KS tests) import `scipy.stats` at their top, a third of GX's import (~0.6 s of
    CPU in every process that gates). Only those distribution expectations call it, and the
    gate's contracts have none. `scipy.stats` is therefore imported when first used: the modules
    that import it get a stand-in that imports the real module at its first attribute read.
    Nothing of GX is changed; tests/unit/test_gx_adapter.py checks both halves."""
    if "scipy.stats" in sys.modules or importlib.util.find_spec("scipy") is None:
        return
    spec = importlib.util.find_spec("scipy.stats")   # imports the `scipy` package only (~4 ms)
    if spec is not None:
        sys.modules["scipy.stats"] = _ModuleOnFirstUse("scipy.stats", spec)


_WARNED: set[str] = set()


def adjust() -> bool:
    """Apply the adjustments (idempotent) where this GX release was tested; True if applied."""
    gx = import_gx()
    if not version_is_tested(gx.__version__):
        if gx.__version__ not in _WARNED:
            _WARNED.add(gx.__version__)
            tested = ", ".join(f"{a}.{b}" for a, b in sorted(TESTED_VERSIONS))
            warnings.warn(f"great_expectations {gx.__version__} was not tested with the gate's adjustments "
                          f"(tested: {tested}); GX runs as shipped — slower, same counts. Run "
                          f"tests/unit/test_gx_adapter.py against it and add it to quality/gx_adapter.TESTED_VERSIONS.",
                          UntestedGxVersion, stacklevel=2)
        return False
    skip_data_fingerprint()
    configurations_once_per_validation()
    templates_compiled_once()
    return True


_TEMPLATES = None   # the process's Jinja bytecode cache for GX's Data Docs views


def templates_compiled_once() -> None:
    """Every Data Docs view GX creates shares one in-memory Jinja bytecode cache."""
    global _TEMPLATES
    import jinja2
    from great_expectations.render.view.view import DefaultJinjaView

    if getattr(DefaultJinjaView.__init__, "_trueup_once", False):
        return
    if _TEMPLATES is None:
        _TEMPLATES = _memory_bytecode_cache()
    original = DefaultJinjaView.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if isinstance(getattr(self, "env", None), jinja2.Environment):
            self.env.bytecode_cache = _TEMPLATES

    __init__._trueup_once = True
    __init__.gx_own = original
    DefaultJinjaView.__init__ = __init__


def _memory_bytecode_cache():
    """A jinja2.BytecodeCache kept in memory (Jinja ships file and memcached ones)."""
    import jinja2

    class MemoryBytecodeCache(jinja2.BytecodeCache):
        def __init__(self) -> None:
            self._code: dict[str, bytes] = {}

        def load_bytecode(self, bucket) -> None:
            if bucket.key in self._code:
                bucket.bytecode_from_string(self._code[bucket.key])

        def dump_bytecode(self, bucket) -> None:
            self._code[bucket.key] = bucket.bytecode_to_string()

    return MemoryBytecodeCache()


def skip_data_fingerprint() -> None:
    """GX fingerprints every pandas batch below 1 GB (md5 over `hash_pandas_object`, a batch
    marker in the result's metadata) and skips it above: the hashing was 60 % of a 250k-row
    chunk's validation (0.37 of 0.61 s, cProfile) while one 5M-row frame skipped it. The gate
    reads only GX's counts, so its batches are not fingerprinted at any size: what GX checks
    and counts is unchanged. (A module constant of GX's pandas engine; if a GX release drops
    it, batches are hashed again — slower, still correct; tests/unit/test_contracts.py notices.)"""
    from great_expectations.execution_engine import pandas_execution_engine

    if hasattr(pandas_execution_engine, "HASH_THRESHOLD"):
        _SHIPPED.setdefault("HASH_THRESHOLD", pandas_execution_engine.HASH_THRESHOLD)
        pandas_execution_engine.HASH_THRESHOLD = 0


_SHIPPED: dict[str, object] = {}      # GX's own values of what `skip_data_fingerprint` changed
_CONFIGURATIONS = threading.local()   # per thread: expectation id → (expectation, its fields)


def configurations_once_per_validation() -> None:
    """GX builds an expectation's configuration from its fields (pydantic `.dict()`, recursive
    over every value of a `value_set`) each time it asks for it: ~80 times per validation. With
    a 5k-key reference that was 0.35 s per rule per validation whatever the rows (cProfile: 410k
    pydantic calls; two such rules over 250k rows: 0.73 s, 0.19 s read once). Within
    `one_validation()` the fields are read once per expectation and every request gets a fresh
    configuration built from them, as GX builds it (the same type, kwargs, meta, notes,
    description, severity, id and rendered content; tests/unit/test_contracts.py compares the two
    for every kind of rule). Outside a validation GX's own property runs unchanged."""
    from great_expectations.expectations.expectation import Expectation, FailureSeverity, camel_to_snake
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    original = Expectation.configuration
    if getattr(original.fget, "_trueup_once", False):
        return

    def configuration(self):
        cache = getattr(_CONFIGURATIONS, "fields", None)
        if cache is None:
            return original.fget(self)
        if id(self) not in cache:
            cache[id(self)] = (self, self.dict(exclude_defaults=True))   # the expectation pins its id
        kwargs = dict(cache[id(self)][1])
        meta = kwargs.pop("meta", None)
        notes = kwargs.pop("notes", None)
        description = kwargs.pop("description", None)
        severity = kwargs.pop("severity", FailureSeverity.CRITICAL)
        id_ = kwargs.pop("id", None)
        rendered_content = kwargs.pop("rendered_content", None)
        return ExpectationConfiguration(type=camel_to_snake(self.__class__.__name__), kwargs=kwargs, meta=meta,
                                        notes=notes, description=description, severity=severity, id=id_,
                                        rendered_content=rendered_content)

    configuration._trueup_once = True
    configuration.gx_own = original   # GX's own property, for `as_shipped` (and the benchmark's baseline)
    Expectation.configuration = property(configuration)


@contextlib.contextmanager
def one_validation():
    """Around one validation: the span in which configurations are read once per expectation."""
    _CONFIGURATIONS.fields = {}
    try:
        yield
    finally:
        _CONFIGURATIONS.fields = None


def quiet_progress_bars(context) -> None:
    """No progress bars on a context's validations (the config type lives in a GX internal
    module; where a release moved it, GX's default stays: noisier logs, the same results)."""
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig
    except ImportError:
        return
    context.variables.progress_bars = ProgressBarsConfig(globally=False)


@contextlib.contextmanager
def as_shipped():
    """GX exactly as released, for the duration (the adjustments put back afterwards): what the
    adapter's results are compared with."""
    from great_expectations.execution_engine import pandas_execution_engine
    from great_expectations.expectations.expectation import Expectation

    from great_expectations.render.view.view import DefaultJinjaView

    threshold = getattr(pandas_execution_engine, "HASH_THRESHOLD", None)
    adjusted = Expectation.configuration
    own = getattr(adjusted.fget, "gx_own", adjusted)
    Expectation.configuration = own
    view_init = DefaultJinjaView.__init__
    DefaultJinjaView.__init__ = getattr(view_init, "gx_own", view_init)
    if threshold is not None:
        pandas_execution_engine.HASH_THRESHOLD = _SHIPPED.get("HASH_THRESHOLD", threshold)
    try:
        yield
    finally:
        Expectation.configuration = adjusted
        DefaultJinjaView.__init__ = view_init
        if threshold is not None:
            pandas_execution_engine.HASH_THRESHOLD = threshold
