"""The core's provider contract, run against the fake Binance with the real ccxt.pro client."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickwire.events import BookSnapshot, Candle, Quote, Trade
from tickwire.testing import check_provider
from tickwire_ccxtpro.testing import FakeBinance


@pytest.mark.anyio
async def test_check_provider_all_channels(tmp_path: Path) -> None:
    async with FakeBinance(["BTC/USDT", "ETH/USDT"], rate_per_s=40) as fake:
        source = fake.source(
            channels=["trades", "quotes", "book", "candles"],
            book_interval="200ms",
            # the kit counts every event the sink got as produced by the stream, so trades a
            # backfill brings would be miscounted: backfill has its own tests
            backfill=False,
        )
        report = await check_provider(source, fake, deadletter=tmp_path / "dl", timeout=60)
    kinds = {type(e) for e in report.events}
    assert {Trade, Quote, BookSnapshot, Candle} <= kinds
    assert report.symbols_seen == {"BTC/USDT", "ETH/USDT"}
    assert report.reconnects >= 1
    assert report.malformed >= 1
    # the server saw a second round of SUBSCRIBE after the drop
    subscribed = [params for _, method, params in fake.subscriptions if method == "SUBSCRIBE"]
    assert sum("btcusdt@aggTrade" in p for p in subscribed) >= 2
