"""The backfiller against the fake Exchange's REST endpoints (real HTTP on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest

from tickwire._runner.backfill import BackfillWorker
from tickwire.events import Candle, Event, Gap, Trade
from tickwire.metrics import Metrics
from tickwire.protocols import RateLimited
from tickwire_coinbase import CoinbaseBackfiller, CoinbaseSettings
from tickwire_coinbase.backfill import CoinbaseRESTError
from tickwire_coinbase.testing import FakeCoinbase, FakeTrade

pytestmark = pytest.mark.anyio

NS = 1_000_000_000
NOW = 1_796_083_200 * NS + 12_345_678  # 2026-12-01T00:00:00.012345678Z, a fixed clock
DAY = 86400 * NS


def _backfiller(fake: FakeCoinbase) -> CoinbaseBackfiller:
    source = CoinbaseSettings(symbols=["BTC-USD"], ws_url=fake.ws_url, rest_url=fake.rest_url)
    return CoinbaseBackfiller(source, min_interval=0, clock=lambda: NOW)


def _truth(
    trades: list[FakeTrade], seconds: int, interval: str, start: int, end: int
) -> list[Candle]:
    """Candles computed here, independently, from the fake's trade history."""
    step = seconds * NS
    buckets: dict[int, list[FakeTrade]] = {}
    for trade in trades:
        bucket = trade.ts // step * step
        if start <= bucket < end:
            buckets.setdefault(bucket, []).append(trade)
    return [
        Candle(
            "coinbase",
            "BTC-USD",
            interval,  # type: ignore[arg-type]
            bucket,
            group[0].price,
            max(t.price for t in group),
            min(t.price for t in group),
            group[-1].price,
            sum((t.size for t in group), Decimal(0)),
            trades=None,
            basis="trade",
            closed=bucket + step <= NOW,
            source="backfill",
        )
        for bucket, group in sorted(buckets.items())
    ]


@pytest.mark.parametrize(
    ("interval", "seconds", "span"),
    [("1m", 60, 2 * DAY), ("5m", 300, 5 * DAY), ("1h", 3600, 30 * DAY), ("1d", 86400, 30 * DAY)],
)
async def test_candles_over_many_windows_equal_the_truth(
    interval: str, seconds: int, span: int
) -> None:
    async with FakeCoinbase(["BTC-USD"], history_gap=60, now=NOW) as fake:
        # unaligned edges: only buckets starting inside [start, end) count
        start, end = NOW - span + 7 * NS, NOW
        gap = Gap("coinbase", "BTC-USD", f"candles:{interval}", start, end, "startup")
        got = [c async for c in _backfiller(fake).fetch(gap)]
        truth = _truth(fake.trades("BTC-USD"), seconds, interval, start, end)
        assert got == truth
        assert len(got) > 0
        assert [c.start for c in got] == sorted({c.start for c in got})  # ascending, no dupes
        windows = [q for p, q in fake.rest_requests if p.endswith("/candles")]
        buckets = -(-span // (seconds * NS))
        assert len(windows) == -(-buckets // 300)
        for window in windows:
            assert window["granularity"] == str(seconds)
        # volumes come from JSON numbers, exactly: never through binary float
        assert all(c.volume == c.volume.quantize(Decimal("0.001")) for c in got if c.volume)


async def test_the_forming_candle_is_not_closed() -> None:
    async with FakeCoinbase(["BTC-USD"], now=NOW - 30 * NS) as fake:
        await fake.trade("BTC-USD", "70000.5", "1", ts=NOW - 12_345_000)  # 00:00:00.000000678
        gap = Gap("coinbase", "BTC-USD", "candles:1h", NOW - 2 * 3600 * NS, NOW + 1, "startup")
        got = [c async for c in _backfiller(fake).fetch(gap)]
        assert got[-1].start == NOW // (3600 * NS) * 3600 * NS
        assert got[-1].close == Decimal("70000.5") and not got[-1].closed
        assert all(c.closed for c in got[:-1])


async def test_candles_rate_limited() -> None:
    async with FakeCoinbase(["BTC-USD"], now=NOW) as fake:
        fake.rate_limit_next_rest(1)
        gap = Gap("coinbase", "BTC-USD", "candles:1m", NOW - 3600 * NS, NOW, "candle")
        with pytest.raises(RateLimited):
            async for _ in _backfiller(fake).fetch(gap):
                pass
        assert len([c async for c in _backfiller(fake).fetch(gap)]) > 0  # then it works


async def test_http_error_names_status_and_message() -> None:
    async with FakeCoinbase(["BTC-USD"], now=NOW) as fake:
        gap = Gap("coinbase", "NOPE-USD", "candles:1m", NOW - 3600 * NS, NOW, "candle")
        with pytest.raises(CoinbaseRESTError, match="HTTP 404: NotFound") as info:
            async for _ in _backfiller(fake).fetch(gap):
                pass
        assert info.value.status == 404


async def test_unsupported_kind() -> None:
    async with FakeCoinbase(["BTC-USD"], history_days=0.01) as fake:
        with pytest.raises(ValueError, match="candles:1m"):
            _backfiller(fake).fetch(Gap("coinbase", "BTC-USD", "candles:4h", 0, 1, "candle"))


async def test_trades_over_cursor_pages() -> None:
    async with FakeCoinbase(["BTC-USD"], history_gap=30, now=NOW) as fake:
        history = fake.trades("BTC-USD")
        start, end = NOW - DAY + 3 * NS, NOW - 3600 * NS
        gap = Gap("coinbase", "BTC-USD", "trades", start, end, "sequence")
        got = [t async for t in _backfiller(fake).fetch(gap)]
        wanted = [t for t in history if start <= t.ts < end]
        assert len(wanted) > 2000  # several pages of 1000
        assert [t.trade_id for t in got] == [str(t.trade_id) for t in reversed(wanted)]
        for have, want in zip(got, reversed(wanted), strict=True):
            assert isinstance(have, Trade)
            assert (have.ts, have.price, have.size, have.side) == (
                want.ts,
                want.price,
                want.size,
                want.side,  # taker side, inverted from REST
            )
        pages = [q for p, q in fake.rest_requests if p.endswith("/trades")]
        assert "after" not in pages[0] and all("after" in q for q in pages[1:])
        assert len(pages) == -(-(len([t for t in history if t.ts >= start])) // 1000)


async def test_trades_hole_from_withheld_ids_is_filled() -> None:
    async with FakeCoinbase(["BTC-USD"], history_days=0.1) as fake:
        before = await fake.trade("BTC-USD", "100", "1")
        fake.withhold_trades("BTC-USD", 5)
        hidden = [await fake.trade("BTC-USD", f"{101 + i}", "1") for i in range(5)]
        after = await fake.trade("BTC-USD", "200", "1")
        gap = Gap("coinbase", "BTC-USD", "trades", before.ts + 1, after.ts, "sequence")
        source = CoinbaseSettings(symbols=["BTC-USD"], rest_url=fake.rest_url)
        got = [t async for t in CoinbaseBackfiller(source, min_interval=0).fetch(gap)]
        assert [t.trade_id for t in got] == [str(t.trade_id) for t in reversed(hidden)]


async def test_trades_rate_limited_with_retry_after_unknown() -> None:
    async with FakeCoinbase(["BTC-USD"], history_days=0.1) as fake:
        fake.rate_limit_next_rest(1)
        gap = Gap("coinbase", "BTC-USD", "trades", 0, NOW * 2, "sequence")
        with pytest.raises(RateLimited) as info:
            async for _ in _backfiller(fake).fetch(gap):
                pass
        assert info.value.retry_after is None


def test_candle_numbers_become_decimals_from_their_text() -> None:
    from tickwire_coinbase.backfill import _candles_decoder

    body = b"[[1415398768, 0.1, 4.2, 1e-8, 123456789.123456789123, 12.30]]"
    ((t, low, high, open_, close, volume),) = _candles_decoder.decode(body)
    assert t == 1415398768
    assert low == Decimal("0.1")  # float(0.1) would be 0.1000000000000000055...
    assert (high, open_, close) == (
        Decimal("4.2"),
        Decimal("1E-8"),
        Decimal("123456789.123456789123"),
    )
    assert str(volume) == "12.30"


async def test_a_products_apart_trades_gaps_cost_one_request_through_the_worker() -> None:
    async with FakeCoinbase(["BTC-USD"], history_days=0.1) as fake:
        sent = [await fake.trade("BTC-USD", f"{100 + i}", "1") for i in range(12)]
        gaps = [  # trades 1-2 and 7-9 missed; 0, 3-6 and 10-11 were stored already
            Gap("coinbase", "BTC-USD", "trades", sent[0].ts + 1, sent[3].ts, "sequence"),
            Gap("coinbase", "BTC-USD", "trades", sent[6].ts + 1, sent[10].ts, "disconnect"),
        ]
        handed: list[Event] = []

        async def publish(events: Sequence[Event]) -> None:
            handed.extend(events)

        source = CoinbaseSettings(symbols=["BTC-USD"], rest_url=fake.rest_url)
        worker = BackfillWorker(
            "coinbase", CoinbaseBackfiller(source, min_interval=0), publish, Metrics()
        )
        before = len(fake.rest_requests)
        worker.submit(gaps)
        await worker.drain()
        assert len(fake.rest_requests) - before == 1  # one page walk for both gaps
    got = sorted(int(t.trade_id) for t in handed if isinstance(t, Trade) and t.trade_id)
    assert got == sorted(t.trade_id for t in (*sent[1:3], *sent[7:10]))
    rows = [g for g in handed if isinstance(g, Gap)]
    assert [(g.start, g.status) for g in rows] == [
        (gaps[0].start, "filled"),
        (gaps[1].start, "filled"),
    ]
