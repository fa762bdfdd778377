"""assets/transform/dbt_adapter.py: the behaviour flags' source, found without inspect.stack(), is
the module stock dbt-common names — from a plain caller and from the adapter dbt really builds."""
from __future__ import annotations

import importlib.metadata

from trueup.assets.transform import dbt_adapter


def _render_flag():
    from dbt_common.behavior_flags import Behavior

    behavior = Behavior([{"name": "a_flag", "default": False, "description": "d"}], {})
    return behavior.a_flag._behavior_change_event.flag_source


def test_the_tested_release_is_the_installed_one():
    assert dbt_adapter.version_is_tested(importlib.metadata.version("dbt-common"))


def test_the_flags_source_is_the_one_stock_dbt_common_names(monkeypatch):
    from dbt_common.behavior_flags import BehaviorFlagRendered

    adjusted = BehaviorFlagRendered.__dict__["_default_source"] if dbt_adapter.adjust() else None
    monkeypatch.setattr(BehaviorFlagRendered, "_default_source", dbt_adapter.stock_default_source())
    stock = _render_flag()
    assert stock == __name__   # stock: the first module on the stack outside behavior_flags
    monkeypatch.setattr(BehaviorFlagRendered, "_default_source", adjusted)
    assert _render_flag() == stock


def test_flags_an_adapter_renders_name_the_adapters_module_stock_and_adjusted(monkeypatch):
    """As dbt renders them: the adapter's `behavior` setter (dbt.adapters.base.impl) builds them."""
    from types import SimpleNamespace

    from dbt.adapters.base.impl import BaseAdapter
    from dbt_common.behavior_flags import BehaviorFlagRendered

    def sources() -> list[str]:
        adapter = SimpleNamespace(_behavior_flags=[], config=SimpleNamespace(flags={}))
        BaseAdapter.behavior.fset(adapter, [{"name": "one", "default": False, "description": "d"},
                                            {"name": "two", "default": True, "docs_url": "u", "source": "mine"}])
        return [adapter._behavior.one._behavior_change_event.flag_source,
                adapter._behavior.two._behavior_change_event.flag_source]

    adjusted = BehaviorFlagRendered.__dict__["_default_source"] if dbt_adapter.adjust() else None
    monkeypatch.setattr(BehaviorFlagRendered, "_default_source", dbt_adapter.stock_default_source())
    stock = sources()
    assert stock == ["dbt.adapters.base.impl", "mine"]
    monkeypatch.setattr(BehaviorFlagRendered, "_default_source", adjusted)
    assert sources() == stock
