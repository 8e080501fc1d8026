"""Price history over the fake IG: exact candles, paging, and the weekly allowance."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tickwire.events import Candle, Gap
from tickwire.protocols import RateLimited
from tickwire_ig.backfill import IGBackfiller
from tickwire_ig.settings import IGSettings
from tickwire_ig.testing import FakeIG

from .conftest import EPIC, source_for

pytestmark = pytest.mark.anyio

MIN = 60 * 1_000_000_000
T0 = int(datetime(2026, 1, 5, 10, 0, tzinfo=UTC).timestamp()) * 1_000_000_000


def _gap(minutes: int, start: int = T0) -> Gap:
    return Gap("ig", EPIC, "candles:1m", start, start + minutes * MIN, "disconnect")


async def _all(backfiller: IGBackfiller, gap: Gap) -> list[Candle]:
    return [e async for e in backfiller.fetch(gap)]  # type: ignore[misc]


async def test_candles_match_the_history_exactly_across_pages() -> None:
    async with FakeIG() as fake:
        backfiller = IGBackfiller(IGSettings(**source_for(fake, page_size=7)))
        candles = await _all(backfiller, _gap(30))
        assert [c.start for c in candles] == [T0 + i * MIN for i in range(30)]
        for candle in candles:
            row = fake.history_bar(EPIC, 60_000, candle.start // 1_000_000)
            want = [
                (Decimal(str(row[p]["bid"])) + Decimal(str(row[p]["ask"]))) / 2
                for p in ("openPrice", "highPrice", "lowPrice", "closePrice")
            ]
            assert [candle.open, candle.high, candle.low, candle.close] == want
            assert candle.source == "backfill" and candle.closed and candle.basis == "mid"
        assert len(fake.price_requests) == 5  # 30 rows, 7 a page
        assert {r["resolution"] for r in fake.price_requests} == {"MINUTE"}
        assert backfiller.remaining == 10_000 - 30


async def test_allowance_exhausted_stops_cleanly_and_does_not_hammer() -> None:
    async with FakeIG(allowance=25) as fake:
        backfiller = IGBackfiller(IGSettings(**source_for(fake, page_size=10)))
        got: list[Candle] = []

        async def drain() -> None:
            async for event in backfiller.fetch(_gap(60)):
                got.append(event)  # type: ignore[arg-type]

        with pytest.raises(RateLimited, match="allowance") as info:
            await drain()
        assert len(got) == 25
        assert info.value.retry_after is not None and info.value.retry_after > 3600
        requests = len(fake.price_requests)
        # asked again while the allowance is spent: no request at all
        with pytest.raises(RateLimited):
            await _all(backfiller, _gap(10, T0 + 120 * MIN))
        assert len(fake.price_requests) == requests


async def test_allowance_error_from_ig_is_a_rate_limit() -> None:
    async with FakeIG(allowance=0) as fake:
        backfiller = IGBackfiller(IGSettings(**source_for(fake)))
        with pytest.raises(RateLimited, match="historical data allowance"):
            await _all(backfiller, _gap(5))
        assert len(fake.price_requests) == 1


async def test_expired_tokens_on_rest_log_in_again() -> None:
    async with FakeIG() as fake:
        backfiller = IGBackfiller(IGSettings(**source_for(fake)))
        assert len(await _all(backfiller, _gap(3))) == 3
        fake.expire_tokens()
        assert len(await _all(backfiller, _gap(3, T0 + 10 * MIN))) == 3
        assert fake.logins == [2, 2]
