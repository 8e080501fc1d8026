"""tickwire provider family ``ccxt``: every exchange ccxt.pro streams, as ``ccxt:<exchange id>``.

This module holds the hook implementations only; each stage lives in the module of its name.
There is no ``tickwire_subscribe``: ccxt.pro sends its own subscribe messages inside
``watch_*``, and the connection starts one watch loop per (symbol, channel) when it opens.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tickwire.events import INTERVAL_NS
from tickwire.hookspecs import hookimpl
from tickwire.protocols import Capabilities, Limits, ProviderInfo, ProviderRegistrar
from tickwire.settings import SourceSettings
from tickwire_ccxtpro.backfill import CcxtBackfiller
from tickwire_ccxtpro.connect import CcxtConnector
from tickwire_ccxtpro.normalize import CcxtNormalizer
from tickwire_ccxtpro.settings import FAMILY, PREFIX, CcxtSettings

__version__ = "0.1.0"

_BACKFILL = frozenset({"trades", *(f"candles:{i}" for i in INTERVAL_NS)})

#: What the family can do; each exchange's ``has`` is checked when a source is validated.
CAPABILITIES = Capabilities(
    channels=frozenset({"trades", "quotes", "book", "candles"}),
    streamed_candles=frozenset(INTERVAL_NS),
    trade_ids="unique",
    backfill=_BACKFILL,
)
#: Binance spot: aggregate-trade ids go up by one per symbol, so holes are detected by id.
BINANCE_CAPABILITIES = Capabilities(
    channels=CAPABILITIES.channels,
    streamed_candles=CAPABILITIES.streamed_candles,
    trade_ids="sequential",
    backfill=_BACKFILL,
)
LIMITS = Limits(
    keepalive=30.0,  # the connection sends a heartbeat every 5 s while ccxt's sockets are up
    rest_max_rows=1000,
)
BINANCE_LIMITS = Limits(
    keepalive=30.0,
    symbols_per_connection=200,  # ccxt's subscriptionLimitByStream for spot
    rest_max_rows=1000,
)


@asynccontextmanager
async def simulator() -> AsyncIterator[dict[str, Any]]:
    """Run the fake Binance with a simulated market; yield the source keys pointing at it."""
    from tickwire_ccxtpro.testing import FakeBinance

    async with FakeBinance(rate_per_s=20) as fake:
        yield {"ws_url": fake.ws_url, "rest_url": fake.rest_url}


def _ours(source: SourceSettings) -> bool:
    return source.provider.startswith(PREFIX) and isinstance(source, CcxtSettings)


@hookimpl
def tickwire_register_providers(register: ProviderRegistrar) -> None:
    """Register the ``ccxt`` family, and ``ccxt:binance`` with its sequential trade ids."""
    register(
        ProviderInfo(
            name="ccxt:binance",
            settings=CcxtSettings,
            capabilities=BINANCE_CAPABILITIES,
            limits=BINANCE_LIMITS,
            description="Binance spot through ccxt.pro: trades, candles, book, tickers; REST",
            simulator=simulator,
        )
    )
    register(
        ProviderInfo(
            name=FAMILY,
            settings=CcxtSettings,
            capabilities=CAPABILITIES,
            limits=LIMITS,
            description="Any ccxt.pro exchange as ccxt:<id>: trades, candles, book, tickers",
        )
    )


@hookimpl
def tickwire_connect(source: SourceSettings, info: ProviderInfo) -> CcxtConnector | None:
    """One ccxt.pro exchange instance per connection, its watch loops feeding the runner."""
    if not _ours(source):
        return None
    assert isinstance(source, CcxtSettings)
    return CcxtConnector(source, sequential=info.capabilities.trade_ids == "sequential")


@hookimpl
def tickwire_normalize(source: SourceSettings, info: ProviderInfo) -> CcxtNormalizer | None:
    """A fresh normalizer for each connection."""
    if not _ours(source):
        return None
    return CcxtNormalizer(source.provider)


@hookimpl
def tickwire_backfill(source: SourceSettings, info: ProviderInfo) -> CcxtBackfiller | None:
    """REST candles and trades through ccxt's ``fetch_ohlcv`` / ``fetch_trades``."""
    if not _ours(source):
        return None
    assert isinstance(source, CcxtSettings)
    return CcxtBackfiller(source) if source.backfill else None


__all__ = (
    "BINANCE_CAPABILITIES",
    "BINANCE_LIMITS",
    "CAPABILITIES",
    "LIMITS",
    "CcxtBackfiller",
    "CcxtConnector",
    "CcxtNormalizer",
    "CcxtSettings",
    "simulator",
)
