"""tickwire provider ``ig``: IG Markets over REST and Lightstreamer.

This module holds the hook implementations only; each stage lives in the module of its name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tickwire.hookspecs import hookimpl
from tickwire.protocols import Capabilities, Limits, ProviderInfo, ProviderRegistrar
from tickwire.settings import SourceSettings
from tickwire_ig.backfill import RESOLUTIONS, IGBackfiller
from tickwire_ig.connect import IGConnector
from tickwire_ig.normalize import PROVIDER, IGNormalizer
from tickwire_ig.settings import CHART_SCALES, IGSettings
from tickwire_ig.subscribe import IGSubscriber

__version__ = "0.1.0"

CAPABILITIES = Capabilities(
    # trades: CHART TICK last-traded prices, where the market has them (not FX or CFDs).
    channels=frozenset({"quotes", "candles", "trades"}),
    streamed_candles=frozenset(CHART_SCALES),
    trade_ids="none",
    backfill=frozenset(f"candles:{interval}" for interval in RESOLUTIONS),
    candle_basis="mid",
)
LIMITS = Limits(
    # 40 items per connection by default (the settings split epics by items per epic), and
    # more connections to get around that breach IG's terms: one connection per credential.
    symbols_per_connection=40,
    connections_per_key=1,
    # A live session yields a heartbeat every couple of seconds even on a closed market; this
    # only fires when the SDK lost the server and could not recover within it.
    keepalive=30.0,
    subscribe_within=30.0,
    rest_requests_per_second=10 / 60,  # IG demo: 10 non-trading requests a minute
)


@asynccontextmanager
async def simulator() -> AsyncIterator[dict[str, Any]]:
    """Run the fake IG (REST and Lightstreamer) with a simulated market; yield its source keys."""
    from tickwire_ig.testing import FakeIG

    async with FakeIG(any_epic=True) as fake:
        yield fake.source_keys()


@hookimpl
def tickwire_register_providers(register: ProviderRegistrar) -> None:
    """Register provider ``ig``."""
    register(
        ProviderInfo(
            name=PROVIDER,
            settings=IGSettings,
            capabilities=CAPABILITIES,
            limits=LIMITS,
            description="IG Markets: PRICE quotes, CHART ticks and candles; REST price history",
            simulator=simulator,
        )
    )


@hookimpl
def tickwire_connect(source: SourceSettings, info: ProviderInfo) -> IGConnector | None:
    """Log in over REST and open Lightstreamer sessions at the endpoint the login names."""
    if source.provider != PROVIDER or not isinstance(source, IGSettings):
        return None
    return IGConnector(source)


@hookimpl
def tickwire_subscribe(source: SourceSettings, info: ProviderInfo) -> IGSubscriber | None:
    """Subscribe PRICE / CHART items for the source's channels."""
    if source.provider != PROVIDER or not isinstance(source, IGSettings):
        return None
    return IGSubscriber(source)


@hookimpl
def tickwire_normalize(source: SourceSettings, info: ProviderInfo) -> IGNormalizer | None:
    """A fresh normalizer for each connection (it reports the previous one's outage)."""
    if source.provider != PROVIDER or not isinstance(source, IGSettings):
        return None
    return IGNormalizer(source)


@hookimpl
def tickwire_backfill(source: SourceSettings, info: ProviderInfo) -> IGBackfiller | None:
    """Candles from ``GET /prices/{epic}`` within IG's weekly data allowance."""
    if source.provider != PROVIDER or not isinstance(source, IGSettings):
        return None
    return IGBackfiller(source)


__all__ = (
    "CAPABILITIES",
    "LIMITS",
    "IGBackfiller",
    "IGConnector",
    "IGNormalizer",
    "IGSettings",
    "IGSubscriber",
    "simulator",
)
