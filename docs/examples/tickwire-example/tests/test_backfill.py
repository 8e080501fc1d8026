"""The backfill stage against the fake's REST endpoint: it returns the server's truth."""

from __future__ import annotations

import time

import pytest

from tickwire.events import NS_PER_SECOND, Candle, Gap
from tickwire.protocols import BackfillRefused, RateLimited
from tickwire_example.backfill import ExampleBackfiller
from tickwire_example.settings import ExampleSettings
from tickwire_example.testing import FakeExchange

pytestmark = pytest.mark.anyio
MINUTE_MS = 60_000


async def _fill(fake: FakeExchange, minutes: int) -> int:
    now_ms = time.time_ns() // 1_000_000
    start = now_ms - now_ms % MINUTE_MS - minutes * MINUTE_MS
    for m in range(minutes):
        if m % 7 == 3:
            continue  # a minute without trades: no candle, as on a real exchange
        for k, price in enumerate(("10.00", "10.50", "9.75")):
            await fake.trade("AAA-USD", price, "1", "buy", start + m * MINUTE_MS + k * 1000)
    return start


async def test_candles_equal_the_server_truth_across_pages() -> None:
    async with FakeExchange() as fake:
        start = await _fill(fake, 1200)  # more than two pages of 500
        end = start + 1200 * MINUTE_MS
        source = ExampleSettings(symbols=["AAA-USD"], rest_url=fake.rest_url)
        gap = Gap("example", "AAA-USD", "candles:1m", start * 10**6, end * 10**6, "startup")
        got = [e async for e in ExampleBackfiller(source).fetch(gap)]
        truth = fake.candle_rows("AAA-USD", MINUTE_MS, start, end)
    assert all(isinstance(c, Candle) and c.source == "backfill" for c in got)
    assert [
        [c.start // 10**6, str(c.open), str(c.high), str(c.low), str(c.close), str(c.volume)]
        for c in got
        if isinstance(c, Candle)
    ] == truth
    assert len(got) == 1200 - len(range(3, 1200, 7))


async def test_rate_limit_is_raised_for_the_runner() -> None:
    async with FakeExchange() as fake:
        fake.rate_limit_next_rest(1)
        source = ExampleSettings(symbols=["AAA-USD"], rest_url=fake.rest_url)
        now = time.time_ns()
        gap = Gap("example", "AAA-USD", "candles:1m", now - 60 * NS_PER_SECOND, now, "candle")
        with pytest.raises(RateLimited) as info:
            _ = [e async for e in ExampleBackfiller(source).fetch(gap)]
    assert info.value.retry_after == pytest.approx(0.1)


async def test_trades_history_is_refused() -> None:
    source = ExampleSettings(symbols=["AAA-USD"], rest_url="http://127.0.0.1:9")
    gap = Gap("example", "AAA-USD", "trades", 0, NS_PER_SECOND, "sequence")
    with pytest.raises(BackfillRefused):
        _ = [e async for e in ExampleBackfiller(source).fetch(gap)]
