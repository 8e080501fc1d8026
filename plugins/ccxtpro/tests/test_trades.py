"""Trades from the real ccxt.pro client through the plugin: exact, and none lost in a burst."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from decimal import Decimal

import pytest

from tickwire.events import Gap, Trade
from tickwire.pipeline import Pipeline
from tickwire.testing import MemorySink
from tickwire_ccxtpro.testing import FakeBinance, TapeTrade

SYMBOL = "BTC/USDT"


def expected(tape: list[TapeTrade]) -> list[tuple[object, ...]]:
    return [
        (
            "ccxt:binance",
            SYMBOL,
            str(t.id),
            t.ts * 1_000_000,
            Decimal(t.price),
            Decimal(t.qty),
            "sell" if t.buyer_maker else "buy",  # m: the buyer was the maker, so a seller took
        )
        for t in tape
    ]


def got(events: list[Trade]) -> list[tuple[object, ...]]:
    return [(e.provider, e.symbol, e.trade_id, e.ts, e.price, e.size, e.side) for e in events]


@pytest.mark.anyio
async def test_trades_exact(make_pipeline: Callable[..., Pipeline]) -> None:
    async with FakeBinance([SYMBOL], rate_per_s=0) as fake:
        sink = MemorySink()
        async with make_pipeline(fake.source(channels=["trades"]), sink=sink):
            await fake.subscribed("btcusdt@aggTrade")
            tape = await fake.burst(SYMBOL, 3000)
            await sink.wait_for(lambda m: len(m.of("trade")) >= len(tape), 30)
    trades = [e for e in sink.events if isinstance(e, Trade)]
    assert got(trades) == expected(tape)
    assert all(isinstance(t.price, Decimal) for t in trades)
    assert not [e for e in sink.events if isinstance(e, Gap)]


@pytest.mark.anyio
async def test_burst_larger_than_ccxt_default_cache_loses_nothing(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    """200 000 trades blasted at once: ccxt's default ``tradesLimit`` (1000) would drop half."""
    async with FakeBinance([SYMBOL], rate_per_s=0) as fake:
        sink = MemorySink()
        async with make_pipeline(fake.source(channels=["trades"]), sink=sink):
            await fake.subscribed("btcusdt@aggTrade")
            tape = await fake.burst(SYMBOL, 200_000)
            await sink.wait_for(lambda m: len(m.events) >= len(tape), 100)
    trades = [e for e in sink.events if isinstance(e, Trade)]
    assert len(trades) == 200_000
    assert got(trades) == expected(tape)
    assert not [e for e in sink.events if isinstance(e, Gap)]


@pytest.mark.anyio
async def test_naive_cache_drops_are_detected_as_gaps(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    """With ccxt's default 1000-row ring the drops happen, and are recorded, never silent."""
    async with FakeBinance([SYMBOL], rate_per_s=0) as fake:
        sink = MemorySink()
        source = fake.source(channels=["trades"], trades_cache=1000)
        async with make_pipeline(source, sink=sink):
            await fake.subscribed("btcusdt@aggTrade")
            tape = await fake.burst(SYMBOL, 50_000)
            last = str(tape[-1].id)
            await sink.wait_for(
                lambda m: any(isinstance(e, Trade) and e.trade_id == last for e in m.events), 60
            )
    trades = [e for e in sink.events if isinstance(e, Trade)]
    gaps = [e for e in sink.events if isinstance(e, Gap) and e.kind == "trades"]
    lost = len(tape) - len({t.trade_id for t in trades})
    assert lost > 0, "the burst did not overflow a 1000-row cache: the test proves nothing"
    assert gaps and all(g.reason == "sequence" for g in gaps)
    # every hole between two delivered trades is covered by a recorded gap
    ids = sorted(int(t.trade_id) for t in trades if t.trade_id)
    by_id = {t.id: t.ts * 1_000_000 for t in tape}
    holes = [(a, b) for a, b in itertools.pairwise(ids) if b > a + 1]
    for a, b in holes:
        assert any(g.start <= by_id[a] and g.end >= by_id[b] for g in gaps), (a, b)
