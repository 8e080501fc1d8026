"""Plugin discovery and the hook contract."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import jsonfeed
import pytest

from tickwire import hookspecs
from tickwire._plugins import PluginError, Plugins
from tickwire.hookspecs import hookimpl
from tickwire.protocols import ProviderInfo


def test_builtins_are_registered_like_plugins() -> None:
    plugins = Plugins(entry_points=False)
    assert {"null", "console"} <= set(plugins.sinks)
    assert plugins.records[0].name == "tickwire.builtin.sinks"


def test_async_stage_hookimpl_is_refused() -> None:
    class Bad:
        @hookimpl
        async def tickwire_normalize(self, source, info):  # pragma: no cover - never called
            return None

    with pytest.raises(PluginError, match="plain 'def'"):
        Plugins([Bad()], entry_points=False)


def test_a_tryfirst_plugin_replaces_one_stage_of_another_provider() -> None:
    def mine(frame, received_ts):
        return []

    class Override:
        @hookimpl(tryfirst=True)
        def tickwire_normalize(self, source, info):
            return mine if source.provider == "jsonfeed" else None

    plugins = Plugins([jsonfeed, Override()], entry_points=False)
    info = plugins.provider("jsonfeed")
    source = info.settings(provider="jsonfeed", symbols=["A"])
    assert plugins.normalizer(source, info) is mine
    assert plugins.connector(source, info).url == "ws://127.0.0.1:1"  # type: ignore[attr-defined]


def test_provider_family_serves_its_members() -> None:
    plugins = Plugins([jsonfeed], entry_points=False)
    assert isinstance(plugins.provider("jsonfeed:eu"), ProviderInfo)


def test_disable_plugins_env_blocks_entry_points(monkeypatch) -> None:
    monkeypatch.setenv("TICKWIRE_DISABLE_PLUGINS", "coinbase,sqlite")
    plugins = Plugins()
    assert "coinbase" not in plugins.providers and "sqlite" not in plugins.sinks


def test_every_hook_is_documented_and_tested() -> None:
    """Datasette's rule: each hook has a docs section and a ``test_hook_<name>`` test."""
    root = Path(__file__).parents[2]
    docs = (root / "docs" / "plugin-hooks.md").read_text()
    tests = "\n".join(p.read_text() for p in (root / "core" / "tests").glob("test_*.py"))
    for name in hookspecs.STAGE_HOOKS + hookspecs.DISCOVERY_HOOKS:
        spec = getattr(hookspecs, name)
        assert inspect.getdoc(spec), f"{name} has no docstring"
        assert re.search(rf"^## `?{name}", docs, re.M), f"docs/plugin-hooks.md lacks {name}"
        assert f"def test_hook_{name}" in tests, f"no test_hook_{name}"
