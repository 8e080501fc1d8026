"""tickwire provider ``example``: the Example Exchange feed and its REST candles.

This module holds the hook implementations only; each stage lives in the module of its name.
Every stage hook starts with a one-line guard: a hook returns ``None`` for a source that is
not this provider's, so the other plugins get their turn.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tickwire.hookspecs import hookimpl
from tickwire.protocols import Capabilities, Limits, ProviderInfo, ProviderRegistrar
from tickwire.settings import SourceSettings
from tickwire.transport import WebSocketConnector
from tickwire_example.backfill import ExampleBackfiller
from tickwire_example.connect import connector_for
from tickwire_example.normalize import PROVIDER, ExampleNormalizer
from tickwire_example.settings import ExampleSettings
from tickwire_example.subscribe import ExampleSubscriber

__version__ = "0.1.0"

CAPABILITIES = Capabilities(
    channels=frozenset({"trades", "quotes"}),
    trade_ids="sequential",  # ids go up by one per symbol: the core finds holes by id
    backfill=frozenset({"candles:1m", "candles:5m", "candles:1h"}),
)
LIMITS = Limits(
    symbols_per_connection=100,
    messages_per_second=5,
    keepalive=5,  # heartbeats every second: 5 s of silence is a stall
    rest_requests_per_second=10,
    rest_max_rows=500,
)


@asynccontextmanager
async def simulator() -> AsyncIterator[dict[str, Any]]:
    """The fake exchange with a simulated market (``tickwire demo --provider example``)."""
    from tickwire_example.testing import FakeExchange

    async with FakeExchange() as fake:
        fake.simulate(rate_per_s=20)
        yield {"ws_url": fake.ws_url, "rest_url": fake.rest_url}


@hookimpl
def tickwire_register_providers(register: ProviderRegistrar) -> None:
    """Register provider ``example``."""
    register(
        ProviderInfo(
            name=PROVIDER,
            settings=ExampleSettings,
            capabilities=CAPABILITIES,
            limits=LIMITS,
            description="Example Exchange: trades and quotes; REST candles",
            simulator=simulator,
        )
    )


@hookimpl
def tickwire_connect(source: SourceSettings, info: ProviderInfo) -> WebSocketConnector | None:
    """Open websocket connections to ``source.ws_url``."""
    if source.provider != PROVIDER or not isinstance(source, ExampleSettings):
        return None
    return connector_for(source)


@hookimpl
def tickwire_subscribe(source: SourceSettings, info: ProviderInfo) -> ExampleSubscriber | None:
    """Subscribe the connection's symbols to the source's channels."""
    if source.provider != PROVIDER or not isinstance(source, ExampleSettings):
        return None
    return ExampleSubscriber(source)


@hookimpl
def tickwire_normalize(source: SourceSettings, info: ProviderInfo) -> ExampleNormalizer | None:
    """A fresh normalizer for each connection."""
    if source.provider != PROVIDER or not isinstance(source, ExampleSettings):
        return None
    return ExampleNormalizer()


@hookimpl
def tickwire_backfill(source: SourceSettings, info: ProviderInfo) -> ExampleBackfiller | None:
    """Candles over ``source.rest_url``."""
    if source.provider != PROVIDER or not isinstance(source, ExampleSettings):
        return None
    return ExampleBackfiller(source)


__all__ = ("CAPABILITIES", "LIMITS", "ExampleSettings", "simulator")
