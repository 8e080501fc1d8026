"""tickwire provider ``coinbase``: the Coinbase Exchange websocket feed and REST history.

This module holds the hook implementations only; each stage lives in the module of its name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tickwire.hookspecs import hookimpl
from tickwire.protocols import Capabilities, Limits, ProviderInfo, ProviderRegistrar
from tickwire.settings import SourceSettings
from tickwire.transport import WebSocketConnector
from tickwire_coinbase.backfill import CoinbaseBackfiller
from tickwire_coinbase.connect import connector_for
from tickwire_coinbase.normalize import PROVIDER, CoinbaseNormalizer
from tickwire_coinbase.settings import CoinbaseSettings
from tickwire_coinbase.subscribe import CoinbaseSubscriber

__version__ = "0.1.0"

CAPABILITIES = Capabilities(
    channels=frozenset({"trades", "quotes", "book"}),
    trade_ids="sequential",
    backfill=frozenset(
        {"trades", "candles:1m", "candles:5m", "candles:15m", "candles:1h", "candles:1d"}
    ),
)
LIMITS = Limits(
    messages_per_second=8,  # per IP, documented (bursts to 20)
    subscribe_within=5,  # or the feed disconnects
    keepalive=10,  # heartbeats come every second per product
    symbols_per_connection=50,  # best practice: spread heavy subscriptions
    rest_requests_per_second=10,  # public endpoints, bursts to 15
    rest_max_rows=300,  # candles per request
)


@asynccontextmanager
async def simulator() -> AsyncIterator[dict[str, Any]]:
    """Run the fake Exchange with a simulated market; yield the source keys pointing at it."""
    from tickwire_coinbase.testing import FakeCoinbase

    async with FakeCoinbase(any_product=True) as fake:
        fake.simulate(rate_per_s=20)
        yield {"ws_url": fake.ws_url, "rest_url": fake.rest_url, "symbols": ["BTC-USD", "ETH-USD"]}


@hookimpl
def tickwire_register_providers(register: ProviderRegistrar) -> None:
    """Register provider ``coinbase``."""
    register(
        ProviderInfo(
            name=PROVIDER,
            settings=CoinbaseSettings,
            capabilities=CAPABILITIES,
            limits=LIMITS,
            description="Coinbase Exchange: trades, quotes, level 2 book; REST candles/trades",
            simulator=simulator,
        )
    )


@hookimpl
def tickwire_connect(source: SourceSettings, info: ProviderInfo) -> WebSocketConnector | None:
    """Open websocket connections to ``source.ws_url``."""
    if source.provider != PROVIDER or not isinstance(source, CoinbaseSettings):
        return None
    return connector_for(source)


@hookimpl
def tickwire_subscribe(source: SourceSettings, info: ProviderInfo) -> CoinbaseSubscriber | None:
    """Subscribe matches/ticker/level2_batch (as configured) plus heartbeat."""
    if source.provider != PROVIDER or not isinstance(source, CoinbaseSettings):
        return None
    return CoinbaseSubscriber(source)


@hookimpl
def tickwire_normalize(source: SourceSettings, info: ProviderInfo) -> CoinbaseNormalizer | None:
    """A fresh normalizer for each connection."""
    if source.provider != PROVIDER or not isinstance(source, CoinbaseSettings):
        return None
    return CoinbaseNormalizer()


@hookimpl
def tickwire_backfill(source: SourceSettings, info: ProviderInfo) -> CoinbaseBackfiller | None:
    """Candles and trades over ``source.rest_url``, paced by the provider's REST limit."""
    if source.provider != PROVIDER or not isinstance(source, CoinbaseSettings):
        return None
    rate = info.limits.rest_requests_per_second
    return CoinbaseBackfiller(source, min_interval=1 / rate if rate else 0.0)


__all__ = (
    "CAPABILITIES",
    "LIMITS",
    "CoinbaseBackfiller",
    "CoinbaseNormalizer",
    "CoinbaseSettings",
    "CoinbaseSubscriber",
    "simulator",
)
