"""Plugin discovery and the typed facade over the hooks.

Each :class:`Plugins` owns its own :class:`pluggy.PluginManager` (no global one). Entry points in
group ``tickwire`` are loaded one by one: a plugin that fails to import is recorded in
:attr:`Plugins.failed` (``tickwire plugins`` shows it) and does not stop the others.

Environment:

* ``TICKWIRE_DISABLE_PLUGINS=a,b`` blocks those entry-point names;
* ``TICKWIRE_LOAD_PLUGINS=a,b`` loads only those (built-ins are always loaded);
* ``TICKWIRE_TRACE_HOOKS=1`` logs every hook call.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, cast

import pluggy

from tickwire import hookspecs
from tickwire.protocols import (
    Backfiller,
    Connector,
    Normalizer,
    ProviderInfo,
    Sink,
    SinkInfo,
    Subscriber,
)
from tickwire.settings import ConfigError, SinkSettings, SourceSettings

log = logging.getLogger("tickwire.plugins")

ENTRY_POINT_GROUP = "tickwire"

#: Built-in plugins, registered exactly as entry-point plugins are.
BUILTIN_PLUGINS: tuple[str, ...] = ("tickwire.builtin.sinks",)


class PluginError(Exception):
    """A plugin broke a rule of the hook contract (named in the message)."""


@dataclass
class PluginRecord:
    """One loaded (or failed) plugin, as ``tickwire plugins`` reports it."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    error: str | None = None
    providers: list[str] = field(default_factory=list)
    sinks: list[str] = field(default_factory=list)


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


class Plugins:
    """A plugin manager with tickwire's hooks, its built-ins and (optionally) entry points.

    :param plugins: extra plugin objects or modules to register (embedding, tests).
    :param entry_points: load installed plugins from group ``tickwire``.
    """

    def __init__(self, plugins: Iterable[object] = (), *, entry_points: bool = True) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.records: list[PluginRecord] = []
        for module in BUILTIN_PLUGINS:
            self._register(importlib.import_module(module), module, None, None, module)
        for plugin in plugins:
            name = getattr(plugin, "__name__", None) or type(plugin).__name__
            self._register(plugin, name, None, None, name)
        if entry_points:
            self._load_entry_points()
        self.pm.check_pending()
        if os.environ.get("TICKWIRE_TRACE_HOOKS"):
            self.pm.add_hookcall_monitoring(
                lambda name, impls, kwargs: log.debug("hook.call %s %s", name, sorted(kwargs)),
                lambda outcome, name, impls, kwargs: None,
            )
        self.providers: dict[str, ProviderInfo] = {}
        self.sinks: dict[str, SinkInfo] = {}
        self._provider_owner: dict[str, PluginRecord] = {}
        self._discover()

    # ---- loading -----------------------------------------------------------------------

    def _load_entry_points(self) -> None:
        blocked = _env_list("TICKWIRE_DISABLE_PLUGINS") or set()
        allowed = _env_list("TICKWIRE_LOAD_PLUGINS")
        seen: set[str] = set()
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in seen:
                continue
            seen.add(ep.name)
            dist = ep.dist.name if ep.dist is not None else None
            version = ep.dist.version if ep.dist is not None else None
            if ep.name in blocked or (allowed is not None and ep.name not in allowed):
                self.pm.set_blocked(ep.name)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                record = PluginRecord(ep.name, ep.value, dist, version, error=repr(exc))
                self.records.append(record)
                log.warning(
                    "plugin.failed %s: %r",
                    ep.name,
                    exc,
                    extra={"event": "plugin.failed", "fields": {"plugin": ep.name}},
                )
                continue
            self._register(plugin, ep.name, dist, version, ep.value)

    def _register(
        self, plugin: object, name: str, dist: str | None, version: str | None, module: str
    ) -> None:
        for hook_name in hookspecs.STAGE_HOOKS + hookspecs.DISCOVERY_HOOKS:
            impl = getattr(plugin, hook_name, None)
            if impl is not None and (
                inspect.iscoroutinefunction(impl) or inspect.isasyncgenfunction(impl)
            ):
                raise PluginError(
                    f"plugin {name!r}: {hook_name} must be a plain 'def' that returns an object "
                    "with async methods, not an 'async def' (a coroutine would win firstresult)"
                )
        if self.pm.is_registered(plugin):
            return
        self.pm.register(plugin, name=name)
        self.records.append(PluginRecord(name, module, dist, version))

    def _discover(self) -> None:
        hook = self.pm.hook
        for impl in hook.tickwire_register_providers.get_hookimpls():
            record = self._record_for(impl.plugin_name)

            def add_provider(info: ProviderInfo, record: PluginRecord | None = record) -> None:
                if not isinstance(info, ProviderInfo):
                    raise PluginError(f"register() takes a ProviderInfo, got {info!r}")
                if info.name in self.providers:
                    return  # first registration wins (tryfirst plugins come first)
                self.providers[info.name] = info
                if record is not None:
                    record.providers.append(info.name)
                    self._provider_owner[info.name] = record

            impl.function(register=add_provider)
        for impl in hook.tickwire_register_sinks.get_hookimpls():
            record = self._record_for(impl.plugin_name)

            def add_sink(info: SinkInfo, record: PluginRecord | None = record) -> None:
                if not isinstance(info, SinkInfo):
                    raise PluginError(f"register() takes a SinkInfo, got {info!r}")
                if info.name in self.sinks:
                    return
                self.sinks[info.name] = info
                if record is not None:
                    record.sinks.append(info.name)

            impl.function(register=add_sink)

    def _record_for(self, plugin_name: str) -> PluginRecord | None:
        for record in self.records:
            if record.name == plugin_name:
                return record
        return None

    # ---- lookups -------------------------------------------------------------------------

    def provider(self, name: str) -> ProviderInfo:
        """The provider serving ``name`` (``ccxt:binance`` is served by ``ccxt``)."""
        info = self.providers.get(name) or self.providers.get(name.split(":", 1)[0])
        if info is None:
            raise ConfigError(self._missing("provider", name, sorted(self.providers)))
        return info

    def sink(self, name: str) -> SinkInfo:
        """The sink registered as ``name``."""
        info = self.sinks.get(name)
        if info is None:
            raise ConfigError(self._missing("sink", name, sorted(self.sinks)))
        return info

    def _missing(self, what: str, name: str, known: list[str]) -> str:
        failed = [r for r in self.records if r.error and r.name == name.split(":", 1)[0]]
        if failed:
            return f"{what} {name!r} failed to load: {failed[0].error}"
        family = name.split(":", 1)[0]
        package = f"tickwire-{family}" if what == "provider" else f"tickwire-{name}"
        return (
            f"{what} {name!r} is not installed (installed: {', '.join(known) or 'none'}); "
            f"install its plugin, e.g. 'pip install {package}'"
        )

    # ---- the typed facade over the stage hooks -------------------------------------------

    def _stage(self, hook_name: str, what: str, **kwargs: Any) -> Any:
        result = getattr(self.pm.hook, hook_name)(**kwargs)
        if inspect.isawaitable(result):
            raise PluginError(f"{hook_name} returned an awaitable for {what}: return an object")
        return result

    def connector(self, source: SourceSettings, info: ProviderInfo) -> Connector:
        """Resolve ``tickwire_connect`` for ``source`` (required)."""
        result = self._stage("tickwire_connect", source.provider, source=source, info=info)
        if result is None:
            raise ConfigError(f"no plugin implements tickwire_connect for {source.provider!r}")
        return cast(Connector, result)

    def subscriber(self, source: SourceSettings, info: ProviderInfo) -> Subscriber | None:
        """Resolve ``tickwire_subscribe`` (``None``: the connection needs no subscribe)."""
        result = self._stage("tickwire_subscribe", source.provider, source=source, info=info)
        return cast("Subscriber | None", result)

    def normalizer(self, source: SourceSettings, info: ProviderInfo) -> Normalizer:
        """Resolve ``tickwire_normalize`` for ``source`` (required)."""
        result = self._stage("tickwire_normalize", source.provider, source=source, info=info)
        if result is None:
            raise ConfigError(f"no plugin implements tickwire_normalize for {source.provider!r}")
        return cast(Normalizer, result)

    def backfiller(self, source: SourceSettings, info: ProviderInfo) -> Backfiller | None:
        """Resolve ``tickwire_backfill`` (``None``: the provider has no history API)."""
        result = self._stage("tickwire_backfill", source.provider, source=source, info=info)
        return cast("Backfiller | None", result)

    def sink_for(self, settings: SinkSettings) -> Sink:
        """Resolve ``tickwire_sink`` for one ``[[sinks]]`` entry (required)."""
        result = self._stage("tickwire_sink", settings.type, sink=settings)
        if result is None:
            raise ConfigError(f"no plugin implements tickwire_sink for {settings.type!r}")
        return cast(Sink, result)


__all__ = ("BUILTIN_PLUGINS", "ENTRY_POINT_GROUP", "PluginError", "PluginRecord", "Plugins")
