"""tickwire provider ``finnhub``: websocket trades (stocks, forex, crypto), REST candles.

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
from tickwire_finnhub.backfill import FinnhubBackfiller
from tickwire_finnhub.connect import connector_for
from tickwire_finnhub.normalize import PROVIDER, FinnhubNormalizer
from tickwire_finnhub.settings import FinnhubSettings
from tickwire_finnhub.subscribe import FinnhubSubscriber

__version__ = "0.1.0"

CAPABILITIES = Capabilities(
    channels=frozenset({"trades"}),
    trade_ids="unique",  # derived from the content: Finnhub has none
    backfill=frozenset({"candles:1m", "candles:5m", "candles:15m", "candles:1h", "candles:1d"}),
)
LIMITS = Limits(
    connections_per_key=1,  # "1 API key can only open 1 connection at a time"
    # The free plan's figure. A source's ``max_symbols`` setting overrides it for that source
    # (the runner reads ``source.symbols_per_connection`` first) and its settings model refuses
    # more symbols than that. ``max_symbols`` is left unset here on purpose: the runner would
    # apply it to every source and refuse paid plans with more symbols.
    symbols_per_connection=50,
    keepalive=150,  # Finnhub pings only every 1-2 minutes when idle
    rest_requests_per_second=1.0,  # 60 calls/minute on the free plan
)

#: The symbols of the simulated market: a stock, a forex pair and a crypto pair.
SIMULATED_SYMBOLS = ("AAPL", "OANDA:EUR_USD", "BINANCE:BTCUSDT")


@asynccontextmanager
async def simulator() -> AsyncIterator[dict[str, Any]]:
    """Run the fake Finnhub with a simulated market; yield the source keys pointing at it."""
    from tickwire_finnhub.testing import FakeFinnhub

    async with FakeFinnhub(ping_interval=5.0) as fake:
        fake.simulate(rate_per_s=20)
        yield {
            "ws_url": fake.ws_url,
            "rest_url": fake.rest_url,
            "symbols": list(SIMULATED_SYMBOLS),
            "api_key": fake.api_key,
        }


@hookimpl
def tickwire_register_providers(register: ProviderRegistrar) -> None:
    """Register provider ``finnhub``."""
    register(
        ProviderInfo(
            name=PROVIDER,
            settings=FinnhubSettings,
            capabilities=CAPABILITIES,
            limits=LIMITS,
            description="Finnhub: trades of US stocks, forex and crypto; REST candles (premium)",
            simulator=simulator,
        )
    )


@hookimpl
def tickwire_connect(source: SourceSettings, info: ProviderInfo) -> WebSocketConnector | None:
    """The key's one websocket, ``ws_url?token=<key>``."""
    if source.provider != PROVIDER or not isinstance(source, FinnhubSettings):
        return None
    return connector_for(source)


@hookimpl
def tickwire_subscribe(source: SourceSettings, info: ProviderInfo) -> FinnhubSubscriber | None:
    """One ``subscribe`` message per symbol."""
    if source.provider != PROVIDER or not isinstance(source, FinnhubSettings):
        return None
    return FinnhubSubscriber()


@hookimpl
def tickwire_normalize(source: SourceSettings, info: ProviderInfo) -> FinnhubNormalizer | None:
    """A fresh normalizer for each connection."""
    if source.provider != PROVIDER or not isinstance(source, FinnhubSettings):
        return None
    return FinnhubNormalizer()


@hookimpl
def tickwire_backfill(source: SourceSettings, info: ProviderInfo) -> FinnhubBackfiller | None:
    """Candles over ``source.rest_url``, spaced by the plan's calls per minute."""
    if source.provider != PROVIDER or not isinstance(source, FinnhubSettings):
        return None
    return FinnhubBackfiller(source)


__all__ = (
    "CAPABILITIES",
    "LIMITS",
    "SIMULATED_SYMBOLS",
    "FinnhubBackfiller",
    "FinnhubNormalizer",
    "FinnhubSettings",
    "FinnhubSubscriber",
    "simulator",
)
