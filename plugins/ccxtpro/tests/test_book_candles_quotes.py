"""Order books, candles and tickers from the real ccxt.pro client through the plugin."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import anyio
import pytest

from tickwire.events import BookSnapshot, Candle, Gap, Quote
from tickwire.pipeline import Pipeline
from tickwire.testing import MemorySink
from tickwire_ccxtpro.testing import FakeBinance

SYMBOL = "BTC/USDT"


def snapshots(sink: MemorySink) -> list[BookSnapshot]:
    return [e for e in sink.events if isinstance(e, BookSnapshot)]


def check_books(fake: FakeBinance, snaps: list[BookSnapshot]) -> None:
    """Every snapshot is the fake's own book at the snapshot's sequence number."""
    assert snaps
    for snap in snaps:
        assert snap.sequence is not None
        truth = fake.book_at(SYMBOL, snap.sequence)
        assert truth is not None, f"no book state {snap.sequence} on the fake"
        assert (snap.bids, snap.asks) == truth, f"book differs at {snap.sequence}"


@pytest.mark.anyio
async def test_book_equals_the_fakes_book_and_recovers_after_a_missing_diff(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    async with FakeBinance([SYMBOL], rate_per_s=5) as fake:
        sink = MemorySink()
        source = fake.source(channels=["book"], book_interval=0)
        async with make_pipeline(source, sink=sink):
            await fake.subscribed("btcusdt@depth@100ms")
            await sink.wait_for(lambda m: len(snapshots(m)) >= 10, 20)
            check_books(fake, snapshots(sink))
            assert fake.rest_calls.get("depth") == 1

            fake.withhold_next_diff(SYMBOL)
            await sink.wait_for(lambda m: any(isinstance(e, Gap) for e in m.events), 20)
            gap = next(e for e in sink.events if isinstance(e, Gap))
            assert (gap.kind, gap.reason, gap.symbol) == ("book", "sequence", SYMBOL)
            mark, wanted = len(sink.events), len(snapshots(sink)) + 10
            await sink.wait_for(lambda m: len(snapshots(m)) >= wanted, 20)
            after = [e for e in sink.events[mark:] if isinstance(e, BookSnapshot)]
            check_books(fake, after)
            assert fake.rest_calls.get("depth") == 2  # a fresh snapshot after the break
            snap = after[-1]
    for s in snapshots(sink):
        assert [p for p, _ in s.bids] == sorted((p for p, _ in s.bids), reverse=True)
        assert [p for p, _ in s.asks] == sorted(p for p, _ in s.asks)
    assert snap.bids[0][0] < snap.asks[0][0]


@pytest.mark.anyio
async def test_streamed_candles_forming_then_closed(make_pipeline: Callable[..., Pipeline]) -> None:
    async with FakeBinance([SYMBOL], rate_per_s=0) as fake:
        sink = MemorySink()
        source = fake.source(channels=["candles"], candle_intervals=["1s"])
        async with make_pipeline(source, sink=sink):
            await fake.subscribed("btcusdt@kline_1s")
            market = fake.markets["BTCUSDT"]
            for _ in range(3):  # three buckets, a few trades in each
                for _ in range(4):
                    await fake._emit_trade(market, market.make_trade(time_ms()))
                await anyio.sleep(1.05)
            await fake._emit_trade(market, market.make_trade(time_ms()))
            await sink.wait_for(lambda m: sum(1 for c in candles(m) if c.closed) >= 3, 20)
    closed = {c.start: c for c in candles(sink) if c.closed}
    tape = fake.tape(SYMBOL)
    for start, candle in closed.items():
        bucket = [t for t in tape if t.ts * 1_000_000 // 10**9 * 10**9 == start]
        assert candle.open == Decimal(bucket[0].price)
        assert candle.close == Decimal(bucket[-1].price)
        assert candle.high == max(Decimal(t.price) for t in bucket)
        assert candle.low == min(Decimal(t.price) for t in bucket)
        assert candle.volume == sum(Decimal(t.qty) for t in bucket)
        assert candle.source == "stream" and candle.interval == "1s"
    forming = [c for c in candles(sink) if not c.closed]
    assert forming, "the forming candle is sent before it closes"
    assert max(c.start for c in candles(sink)) not in closed  # the newest is still forming


def candles(sink: MemorySink) -> list[Candle]:
    return [e for e in sink.events if isinstance(e, Candle)]


def time_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


@pytest.mark.anyio
async def test_tickers_become_quotes(make_pipeline: Callable[..., Pipeline]) -> None:
    async with FakeBinance([SYMBOL], rate_per_s=5) as fake:
        sink = MemorySink()
        async with make_pipeline(fake.source(channels=["quotes"]), sink=sink):
            await sink.wait_for(lambda m: len(m.of("quote")) >= 3, 20)
            fake.paused = True
            await anyio.sleep(0.3)
            (bid, bid_size), (ask, ask_size) = (
                fake.book(SYMBOL)[0][0],
                fake.book(SYMBOL)[1][0],
            )
            mark = len(sink.events)
            fake.paused = False
            await sink.wait_for(lambda m: len(m.events) > mark, 20)
    quote = next(e for e in sink.events[mark:] if isinstance(e, Quote))
    # the first ticker after the pause carries the book top as it was, or one tick newer
    assert quote.bid is not None and quote.ask is not None and quote.bid < quote.ask
    quotes = [e for e in sink.events if isinstance(e, Quote)]
    assert all(isinstance(q.bid_size, Decimal) for q in quotes)
    assert any(
        (q.bid, q.bid_size, q.ask, q.ask_size) == (bid, bid_size, ask, ask_size) for q in quotes
    )
