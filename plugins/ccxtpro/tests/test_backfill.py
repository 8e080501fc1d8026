"""REST history through ccxt: 30 days of 1m candles, 429s, and a dropped connection filled."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import anyio
import pytest

from tickwire.events import Candle, Gap, Trade
from tickwire.pipeline import Pipeline
from tickwire.protocols import RateLimited
from tickwire.testing import MemorySink
from tickwire_ccxtpro.backfill import CcxtBackfiller
from tickwire_ccxtpro.settings import CcxtSettings
from tickwire_ccxtpro.testing import FakeBinance

SYMBOL = "BTC/USDT"
MIN_NS = 60 * 10**9


async def collect(backfiller: CcxtBackfiller, gap: Gap) -> list[object]:
    return [e async for e in backfiller.fetch(gap)]


@pytest.mark.anyio
async def test_thirty_days_of_1m_candles_no_hole_no_duplicate() -> None:
    async with FakeBinance([SYMBOL], rate_per_s=0, max_rows=1000) as fake:
        now = time.time_ns() // MIN_NS * MIN_NS
        start = now - 30 * 86_400 * 10**9
        fake.empty_minutes = {start // MIN_NS + 5000, start // MIN_NS + 5001}  # no trades then
        backfiller = CcxtBackfiller(CcxtSettings(**fake.source()))
        gap = Gap("ccxt:binance", SYMBOL, "candles:1m", start, now, "startup")
        candles = await collect(backfiller, gap)
    assert all(isinstance(c, Candle) and c.source == "backfill" for c in candles)
    starts = [c.start for c in candles if isinstance(c, Candle)]
    assert len(starts) == len(set(starts)), "duplicate candles"
    wanted = [s for s in range(start, now, MIN_NS) if s // MIN_NS not in fake.empty_minutes]
    assert starts == wanted  # every bucket, in order, none outside the gap, empty ones absent
    for c in candles[:50] + candles[-50:]:
        assert isinstance(c, Candle)
        row = fake.kline_row("1m", c.start // 10**6)
        assert row is not None
        assert [c.open, c.high, c.low, c.close, c.volume] == [Decimal(v) for v in row[1:6]]
        assert c.closed
    pages = fake.rest_calls["klines"]
    assert pages == -(-len(wanted) // 1000) or pages == -(-len(wanted) // 1000) + 1
    assert backfiller.requests == pages


@pytest.mark.anyio
async def test_rate_limit_maps_to_rate_limited_then_resumes() -> None:
    async with FakeBinance([SYMBOL], rate_per_s=0, max_rows=1000) as fake:
        now = time.time_ns() // MIN_NS * MIN_NS
        start = now - 3 * 86_400 * 10**9
        backfiller = CcxtBackfiller(CcxtSettings(**fake.source()))
        gap = Gap("ccxt:binance", SYMBOL, "candles:1m", start, now, "startup")
        got: list[Candle] = []

        async def until_limited() -> None:
            async for c in backfiller.fetch(gap):
                assert isinstance(c, Candle)
                got.append(c)
                if len(got) == 2000:
                    fake.rate_limit(1, retry_after=7)

        with pytest.raises(RateLimited) as info:
            await until_limited()
        assert info.value.retry_after == 7
        calls = fake.rest_calls["klines"]
        rest = await collect(backfiller, gap)  # the runner calls again: it resumes
        assert fake.rest_calls["klines"] - calls == 3  # pages 3..5, not from the start
    starts = [c.start for c in got] + [c.start for c in rest if isinstance(c, Candle)]
    assert starts == list(range(start, now, MIN_NS))


@pytest.mark.anyio
async def test_dropped_connection_is_recorded_and_backfilled(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    async with FakeBinance([SYMBOL], rate_per_s=30) as fake:
        sink = MemorySink()
        async with make_pipeline(fake.source(channels=["trades"]), sink=sink) as pipeline:
            await sink.wait_for(lambda m: len(m.of("trade")) >= 20, 20)
            # trades made while nobody listens: the stream never carries them
            await fake.drop_connections()
            missed = fake.hole(SYMBOL, 40)
            await sink.wait_for(
                lambda m: any(isinstance(e, Gap) and e.status == "filled" for e in m.events), 30
            )
            await anyio.sleep(0.5)
            assert pipeline.metrics.value("reconnects_total") >= 1
    gaps = [e for e in sink.events if isinstance(e, Gap)]
    opened = [g for g in gaps if g.status == "open"]
    assert opened and opened[0].kind == "trades" and opened[0].reason == "disconnect"
    assert any(g.status == "filled" for g in gaps)
    ids = {int(e.trade_id) for e in sink.events if isinstance(e, Trade) and e.trade_id}
    assert {t.id for t in missed} <= ids
    tape_ids = [t.id for t in fake.tape(SYMBOL)]
    first, last = min(ids), max(ids)
    assert [i for i in tape_ids if first <= i <= last] == sorted(ids)  # no hole left
    by_id = {t.id: t for t in fake.tape(SYMBOL)}
    for e in sink.events:
        if isinstance(e, Trade) and e.trade_id and int(e.trade_id) in {t.id for t in missed}:
            t = by_id[int(e.trade_id)]
            assert (e.price, e.size, e.ts) == (Decimal(t.price), Decimal(t.qty), t.ts * 10**6)
