"""REST candle backfill against the fake over real HTTP: endpoints, no_data, 403, 429."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tickwire.events import Candle, Gap
from tickwire.protocols import RateLimited
from tickwire_finnhub.backfill import FinnhubAccessDenied, FinnhubBackfiller, FinnhubRESTError
from tickwire_finnhub.settings import FinnhubSettings
from tickwire_finnhub.testing import FakeFinnhub

pytestmark = pytest.mark.anyio
NS = 1_000_000_000
T0 = 1_700_000_040  # a minute boundary (unix s)
NOW = (T0 + 3600) * NS


def source(fake: FakeFinnhub, symbol: str, **kw: object) -> FinnhubSettings:
    return FinnhubSettings(
        api_key=fake.api_key,
        symbols=[symbol],
        ws_url=fake.ws_url,
        rest_url=fake.rest_url,
        rest_calls_per_minute=60_000,
        **kw,
    )


def gap(symbol: str, start_s: int, end_s: int, kind: str = "candles:1m") -> Gap:
    return Gap("finnhub", symbol, kind, start_s * NS, end_s * NS, "startup")


async def collect(b: FinnhubBackfiller, g: Gap) -> list[Candle]:
    out = []
    async for event in b.fetch(g):
        assert isinstance(event, Candle)
        out.append(event)
    return out


@pytest.mark.parametrize(
    ("symbol", "path"),
    [
        ("AAPL", "/stock/candle"),
        ("OANDA:EUR_USD", "/forex/candle"),
        ("BINANCE:BTCUSDT", "/crypto/candle"),
    ],
)
async def test_candles_by_symbol_form_exact_and_oldest_first(symbol: str, path: str) -> None:
    async with FakeFinnhub() as fake:
        fake.add_candles(
            symbol,
            "1",
            [
                (T0 + 60, "10.10", "10.30", "10.00", "10.20", "1500"),
                (T0, "10.00", "10.15", "9.95", "10.10", "0.00012345"),
                (T0 + 120, "10.20", "10.25", "10.10", "10.11", 7),
                (T0 + 600, "1", "1", "1", "1", 1),  # outside the gap
            ],
        )
        b = FinnhubBackfiller(source(fake, symbol), clock=lambda: NOW)
        got = await collect(b, gap(symbol, T0, T0 + 180))
        assert got == [
            Candle(
                "finnhub",
                symbol,
                "1m",
                T0 * NS,
                Decimal("10.00"),
                Decimal("10.15"),
                Decimal("9.95"),
                Decimal("10.10"),
                Decimal("0.00012345"),
                None,
                "trade",
                True,
                "backfill",
            ),
            Candle(
                "finnhub",
                symbol,
                "1m",
                (T0 + 60) * NS,
                Decimal("10.10"),
                Decimal("10.30"),
                Decimal("10.00"),
                Decimal("10.20"),
                Decimal("1500"),
                None,
                "trade",
                True,
                "backfill",
            ),
            Candle(
                "finnhub",
                symbol,
                "1m",
                (T0 + 120) * NS,
                Decimal("10.20"),
                Decimal("10.25"),
                Decimal("10.10"),
                Decimal("10.11"),
                Decimal("7"),
                None,
                "trade",
                True,
                "backfill",
            ),
        ]
        assert fake.requests == [
            (path, {"symbol": symbol, "resolution": "1", "from": str(T0), "to": str(T0 + 179)})
        ]


async def test_no_data_is_an_empty_range() -> None:
    async with FakeFinnhub() as fake:
        b = FinnhubBackfiller(source(fake, "AAPL"), clock=lambda: NOW)
        assert await collect(b, gap("AAPL", T0, T0 + 600)) == []
        assert len(fake.requests) == 1


async def test_the_newest_candle_is_still_forming() -> None:
    async with FakeFinnhub() as fake:
        fake.add_candles("AAPL", "60", [(T0 - 40, 1, 2, 1, 2, 10)])
        b = FinnhubBackfiller(source(fake, "AAPL"), clock=lambda: (T0 + 60) * NS)
        (candle,) = await collect(b, gap("AAPL", T0 - 40, T0 + 3600, "candles:1h"))
        assert candle.closed is False
        assert fake.requests[0][1]["resolution"] == "60"


async def test_long_intraday_ranges_go_a_month_at_a_time() -> None:
    async with FakeFinnhub() as fake:
        b = FinnhubBackfiller(source(fake, "AAPL"), clock=lambda: NOW)
        await collect(b, gap("AAPL", T0, T0 + 70 * 86400, "candles:5m"))
        windows = [(int(p["from"]), int(p["to"])) for _, p in fake.requests]
        assert windows == [
            (T0, T0 + 30 * 86400 - 1),
            (T0 + 30 * 86400, T0 + 60 * 86400 - 1),
            (T0 + 60 * 86400, T0 + 70 * 86400 - 1),
        ]
        b = FinnhubBackfiller(source(fake, "AAPL"), clock=lambda: NOW)
        await collect(b, gap("AAPL", T0, T0 + 70 * 86400, "candles:1d"))
        assert len(fake.requests) == 4
        assert fake.requests[-1][1]["resolution"] == "D"


async def test_403_is_a_clear_error_and_is_not_asked_again() -> None:
    async with FakeFinnhub(candle_access=False) as fake:
        b = FinnhubBackfiller(source(fake, "AAPL"), clock=lambda: NOW)
        with pytest.raises(FinnhubAccessDenied) as exc:
            await collect(b, gap("AAPL", T0, T0 + 60))
        text = str(exc.value)
        assert "HTTP 403" in text and "You don't have access to this resource." in text
        assert "premium" in text
        assert exc.value.status == 403
        # The runner's retries fail at once, without spending the plan's calls.
        with pytest.raises(FinnhubAccessDenied):
            await collect(b, gap("AAPL", T0, T0 + 60))
        assert len(fake.requests) == 1


async def test_429_raises_rate_limited_then_the_retry_succeeds() -> None:
    async with FakeFinnhub() as fake:
        fake.add_candles("BINANCE:BTCUSDT", "1", [(T0, "1.5", "2", "1", "1.75", "0.5")])
        fake.rate_limit_next(1)
        b = FinnhubBackfiller(source(fake, "BINANCE:BTCUSDT"), clock=lambda: NOW)
        with pytest.raises(RateLimited) as exc:
            await collect(b, gap("BINANCE:BTCUSDT", T0, T0 + 60))
        assert "HTTP 429" in str(exc.value) and "API limit reached" in str(exc.value)
        assert exc.value.retry_after is None  # Finnhub documents no Retry-After
        (candle,) = await collect(b, gap("BINANCE:BTCUSDT", T0, T0 + 60))
        assert candle.close == Decimal("1.75")


async def test_calls_per_minute_limit_of_the_fake_answers_429() -> None:
    async with FakeFinnhub(calls_per_minute=2) as fake:
        b = FinnhubBackfiller(source(fake, "AAPL"), clock=lambda: NOW)
        await collect(b, gap("AAPL", T0, T0 + 60))
        await collect(b, gap("AAPL", T0, T0 + 60))
        with pytest.raises(RateLimited):
            await collect(b, gap("AAPL", T0, T0 + 60))


async def test_wrong_key_is_refused_without_retry() -> None:
    async with FakeFinnhub() as fake:
        s = FinnhubSettings(api_key="wrong", symbols=["AAPL"], rest_url=fake.rest_url)
        with pytest.raises(FinnhubAccessDenied, match="HTTP 401"):
            await collect(FinnhubBackfiller(s), gap("AAPL", T0, T0 + 60))


async def test_token_goes_in_a_header_not_the_url() -> None:
    async with FakeFinnhub() as fake:
        b = FinnhubBackfiller(source(fake, "AAPL"), clock=lambda: NOW)
        await collect(b, gap("AAPL", T0, T0 + 60))
        ((_, params),) = fake.requests
        assert "token" not in params


async def test_unsupported_kinds_are_refused() -> None:
    async with FakeFinnhub() as fake:
        b = FinnhubBackfiller(source(fake, "AAPL"))
        with pytest.raises(ValueError, match="no trade history"):
            b.fetch(gap("AAPL", T0, T0 + 60, "trades"))
        with pytest.raises(ValueError, match="candles:1m"):
            b.fetch(gap("AAPL", T0, T0 + 60, "candles:4h"))


async def test_unreadable_or_unequal_candles_are_errors() -> None:
    async with FakeFinnhub() as fake:
        b = FinnhubBackfiller(source(fake, "AAPL"), clock=lambda: NOW)
        with pytest.raises(FinnhubRESTError, match="unequal"):
            b._parse(
                b'{"s":"ok","o":[1],"h":[1],"l":[1],"c":[1,2],"v":[1],"t":[1]}',
                "/stock/candle",
                gap("AAPL", 0, 10),
                "1m",
                60,
            )
        with pytest.raises(FinnhubRESTError, match="unreadable"):
            b._parse(b"<html>", "/stock/candle", gap("AAPL", 0, 10), "1m", 60)
