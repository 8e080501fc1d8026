"""tickwire-nats: NATS JetStream as tickwire's scale-out bus.

* sink ``nats``: a collector publishes every normalized event to JetStream
  (:mod:`tickwire_nats.sink`);
* provider ``nats``: a writer consumes the stream through a durable pull consumer and feeds its
  own sinks, acknowledging only what they wrote (:mod:`tickwire_nats.connect`,
  :mod:`tickwire_nats.ack`);
* :mod:`tickwire_nats.shard`: the stable assignment of symbols to ``--shard I/N`` collectors.

This module holds only the hook implementations.
"""

from __future__ import annotations

from tickwire.events import INTERVAL_NS
from tickwire.hookspecs import hookimpl
from tickwire.protocols import (
    Capabilities,
    Limits,
    Normalizer,
    ProviderInfo,
    ProviderRegistrar,
    SinkInfo,
    SinkRegistrar,
)
from tickwire.settings import SinkSettings, SourceSettings
from tickwire_nats.ack import CommitTracker as CommitTracker
from tickwire_nats.ack import attach as attach
from tickwire_nats.connect import NatsConnector as NatsConnector
from tickwire_nats.normalize import normalize
from tickwire_nats.settings import NatsSinkSettings as NatsSinkSettings
from tickwire_nats.settings import NatsSourceSettings as NatsSourceSettings
from tickwire_nats.sink import NatsSink as NatsSink

__version__ = "0.1.0"

#: What the ``nats`` provider declares: it carries whatever the collectors published.
PROVIDER = ProviderInfo(
    name="nats",
    settings=NatsSourceSettings,
    capabilities=Capabilities(
        channels=frozenset({"trades", "quotes", "book", "candles"}),
        streamed_candles=frozenset(INTERVAL_NS),
        trade_ids="none",
    ),
    # One durable consumer per subject filter; the idle fetch ticks every fetch_timeout.
    limits=Limits(symbols_per_connection=1, keepalive=30.0),
    description="consume a tickwire JetStream stream durably (a scale-out writer)",
)


@hookimpl
def tickwire_register_providers(register: ProviderRegistrar) -> None:
    """Register the ``nats`` provider (writers)."""
    register(PROVIDER)


@hookimpl
def tickwire_register_sinks(register: SinkRegistrar) -> None:
    """Register the ``nats`` sink (collectors)."""
    register(SinkInfo("nats", NatsSinkSettings, "publish events to NATS JetStream (collectors)"))


@hookimpl
def tickwire_connect(source: SourceSettings, info: ProviderInfo) -> NatsConnector | None:
    """The durable pull consumers of a ``nats`` source."""
    if not isinstance(source, NatsSourceSettings):
        return None
    return NatsConnector(source, info)


@hookimpl
def tickwire_normalize(source: SourceSettings, info: ProviderInfo) -> Normalizer | None:
    """Decode bus messages back into events."""
    if not isinstance(source, NatsSourceSettings):
        return None
    return normalize


@hookimpl
def tickwire_sink(sink: SinkSettings) -> NatsSink | None:
    """The JetStream publisher of a ``[[sinks]] type = "nats"`` entry."""
    if not isinstance(sink, NatsSinkSettings):
        return None
    return NatsSink(sink)


__all__ = (
    "PROVIDER",
    "CommitTracker",
    "NatsConnector",
    "NatsSink",
    "NatsSinkSettings",
    "NatsSourceSettings",
    "attach",
    "tickwire_connect",
    "tickwire_normalize",
    "tickwire_register_providers",
    "tickwire_register_sinks",
    "tickwire_sink",
)
