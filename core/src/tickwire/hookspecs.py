"""The hooks a tickwire plugin implements: the only place they are declared.

A plugin is a module (or object) of functions marked with :data:`hookimpl`, named after the hook
they implement, registered through an entry point in group ``tickwire``::

    [project.entry-points.tickwire]
    myexchange = "tickwire_myexchange"

Two kinds of hook:

* **discovery** hooks run once at start-up and declare what the plugin serves, through a
  ``register`` callback (so core can add keyword arguments later without breaking anyone);
* **stage** hooks are *sync factories*, called once per configured source or sink, never per
  message. Each returns an object whose methods do the async work (see
  :mod:`tickwire.protocols`), or ``None`` when the source or sink is not the plugin's. The
  runner resolves them once and then calls the objects directly: no hook dispatch per message.

Every stage hook is ``firstresult``: the first non-``None`` answer wins. To replace one stage of
someone else's provider, implement that hook with ``@hookimpl(tryfirst=True)`` and keep the
rest. Stage hook implementations must be plain ``def`` functions: the plugin manager refuses
``async def`` ones, because a coroutine object would "win" a firstresult call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from tickwire.protocols import (
        Backfiller,
        Connector,
        Normalizer,
        ProviderInfo,
        ProviderRegistrar,
        Sink,
        SinkRegistrar,
        Subscriber,
    )
    from tickwire.settings import SinkSettings, SourceSettings

PROJECT = "tickwire"

hookspec = pluggy.HookspecMarker(PROJECT)
#: Mark a function as the implementation of a tickwire hook.
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---- discovery: once, at start-up ------------------------------------------------------------


@hookspec
def tickwire_register_providers(register: ProviderRegistrar) -> None:
    """Declare every provider this plugin serves.

    Call ``register(ProviderInfo(name=..., settings=..., capabilities=..., limits=...))`` once
    per provider. ``settings`` is the pydantic model a ``[[sources]]`` entry of this provider is
    validated against (a subclass of :class:`tickwire.settings.SourceSettings`).

    Called once per plugin manager, at start-up. No I/O.

    :param register: the callback to call once per provider.
    """


@hookspec
def tickwire_register_sinks(register: SinkRegistrar) -> None:
    """Declare every sink this plugin serves.

    Call ``register(SinkInfo(name=..., settings=...))`` once per sink. ``settings`` is the
    pydantic model a ``[[sinks]]`` entry of this type is validated against (a subclass of
    :class:`tickwire.settings.SinkSettings`).

    Called once per plugin manager, at start-up. No I/O.

    :param register: the callback to call once per sink.
    """


# ---- stages: once per configured source or sink; never per message ---------------------------


@hookspec(firstresult=True)
def tickwire_connect(source: SourceSettings, info: ProviderInfo) -> Connector | None:
    """Return the :class:`~tickwire.protocols.Connector` that opens this source's connections,
    or ``None`` if ``source.provider`` is not yours.

    Called once per configured source at start-up. The runner calls ``connector.open(symbols)``
    for each connection it plans (symbols split by ``info.limits``) and again after every drop,
    with backoff; a websocket provider usually returns
    :class:`tickwire.transport.WebSocketConnector`. No I/O in the hook itself.

    :param source: one validated ``[[sources]]`` entry (an instance of your settings model).
    :param info: what your ``tickwire_register_providers`` declared for this provider.

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def tickwire_subscribe(source: SourceSettings, info: ProviderInfo) -> Subscriber | None:
    """Return the :class:`~tickwire.protocols.Subscriber` that subscribes a connection's
    symbols, or ``None`` if ``source.provider`` is not yours.

    Called once per configured source at start-up. The runner calls
    ``await subscriber.subscribe(conn, symbols)`` right after each connection opens, the
    first time and after every reconnect (that is the resubscribe); ``conn.send`` is paced
    by ``info.limits.messages_per_second``. No I/O in the hook itself.

    :param source: one validated ``[[sources]]`` entry.
    :param info: what your ``tickwire_register_providers`` declared for this provider.

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def tickwire_normalize(source: SourceSettings, info: ProviderInfo) -> Normalizer | None:
    """Return the function that turns one raw frame into events, or ``None`` if
    ``source.provider`` is not yours.

    Called once per connection the runner opens (so state such as an order book starts fresh on
    each connection). The runner calls the returned function as ``normalizer(frame,
    received_ts)`` for every frame: it must be synchronous and do no I/O. It returns an iterable
    of :mod:`tickwire.events` and control items (:class:`~tickwire.protocols.Heartbeat`,
    :class:`~tickwire.protocols.Notice`, :class:`~tickwire.protocols.Subscribed`). Raise
    :class:`~tickwire.protocols.MalformedFrame` for input it cannot read: the runner counts
    it, logs it, keeps it aside and goes on.

    :param source: one validated ``[[sources]]`` entry.
    :param info: what your ``tickwire_register_providers`` declared for this provider.

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def tickwire_backfill(source: SourceSettings, info: ProviderInfo) -> Backfiller | None:
    """Return the :class:`~tickwire.protocols.Backfiller` that fetches this source's history
    over REST, or ``None`` if ``source.provider`` is not yours or it has no history API.

    Called once per configured source at start-up. The runner calls ``backfiller.fetch(gap)``
    for the start-up bootstrap (``kind`` ``candles:<interval>``) and for every gap it detects
    (``trades`` or ``candles:<interval>``), within ``info.limits.rest_requests_per_second``.
    No I/O in the hook itself.

    :param source: one validated ``[[sources]]`` entry.
    :param info: what your ``tickwire_register_providers`` declared for this provider.

    Stops at the first non-None result.
    """


@hookspec(firstresult=True)
def tickwire_sink(sink: SinkSettings) -> Sink | None:
    """Return the :class:`~tickwire.protocols.Sink` that stores events for this ``[[sinks]]``
    entry, or ``None`` if ``sink.type`` is not yours.

    Called once per configured sink at start-up. The runner calls ``await sink.open()`` once,
    then ``await sink.write_batch(events)`` with batches sized by count and time (retrying a
    failed batch with backoff, buffering meanwhile), and ``await sink.aclose()`` at shutdown
    after the last batch. No I/O in the hook itself.

    :param sink: one validated ``[[sinks]]`` entry (an instance of your settings model).

    Stops at the first non-None result.
    """


#: The stage hooks, in data-path order.
STAGE_HOOKS = (
    "tickwire_connect",
    "tickwire_subscribe",
    "tickwire_normalize",
    "tickwire_sink",
    "tickwire_backfill",
)
#: The discovery hooks.
DISCOVERY_HOOKS = ("tickwire_register_providers", "tickwire_register_sinks")

__all__ = ("DISCOVERY_HOOKS", "PROJECT", "STAGE_HOOKS", "hookimpl", "hookspec")
