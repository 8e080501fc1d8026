"""Idempotent replay: the same 100k events written twice leave the same rows."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from tickwire.events import NS_PER_SECOND, Candle, Event, Gap, Quote, Trade
from tickwire_timescale import TimescaleSink

pytestmark = [pytest.mark.anyio, pytest.mark.service]

N = 100_000


def _events() -> list[Event]:
    """80k trades (a tenth without ids) over 3 days, 18k quotes, 1.9k candles, 100 gaps."""
    base = time.time_ns() - 3 * 86_400 * NS_PER_SECOND
    events: list[Event] = []
    for i in range(80_000):
        ts = base + i * 3 * NS_PER_SECOND + i % 7
        trade_id = None if i % 10 == 0 else str(i)
        price = Decimal("100.00") + Decimal(i % 500) / 100
        events.append(
            Trade("replay", f"S{i % 50}", ts, ts + 1, price, Decimal("0.001"), "buy", trade_id)
        )
    for i in range(18_000):
        ts = base + i * 13 * NS_PER_SECOND
        events.append(
            Quote("replay", f"S{i % 50}", ts, ts, Decimal(1), Decimal(2), Decimal(3), None)
        )
    for i in range(1_900):
        start = base - base % (60 * NS_PER_SECOND) + (i // 10) * 60 * NS_PER_SECOND
        events.append(
            Candle(
                "replay", f"S{i % 10}", "1m", start, Decimal(1), Decimal(2), Decimal(1), Decimal(2)
            )
        )
    for i in range(100):
        start = base + i * 600 * NS_PER_SECOND
        events.append(Gap("replay", "S1", "trades", start, start + NS_PER_SECOND, "sequence"))
    assert len(events) == N
    return events


async def _counts(sink: TimescaleSink) -> dict[str, int]:
    return {
        table: int(await sink.pool.fetchval(f"SELECT count(*) FROM {sink.schema}.{table}"))
        for table in ("trades", "quotes", "candles", "gaps")
    }


async def test_replaying_100k_events_adds_nothing(sink: TimescaleSink) -> None:
    events = _events()
    for i in range(0, N, 5000):
        await sink.write_batch(events[i : i + 5000])
    first = await _counts(sink)
    assert first == {"trades": 80_000, "quotes": 18_000, "candles": 1_900, "gaps": 100}
    # The replay in other batch boundaries (and reversed), as a retry after a crash might be.
    for i in range(N, 0, -7000):
        await sink.write_batch(events[max(0, i - 7000) : i])
    assert await _counts(sink) == first
