"""Retention: whole daily partitions older than the retention (by event time) are dropped."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest

from tickwire.events import NS_PER_SECOND, Candle, Event, Gap, Quote, Trade
from tickwire_timescale import TimescaleSettings, TimescaleSink
from tickwire_timescale.schema import day_of, list_partitions

pytestmark = [pytest.mark.anyio, pytest.mark.service]

DAY = 86_400 * NS_PER_SECOND


def _spread(now: int, days: int) -> list[Event]:
    """One trade, quote, candle and gap at noon of each of the last ``days`` days."""
    events: list[Event] = []
    for d in range(days):
        ts = (day_of(now) - d) * DAY + DAY // 2
        one = Decimal(1)
        events += [
            Trade("r", "X", ts, ts, one, one, None, str(d)),
            Quote("r", "X", ts, ts, one, one, one, one),
            Candle("r", "X", "1m", ts, one, one, one, one),
            Gap("r", "X", "trades", ts, ts + NS_PER_SECOND, "sequence"),
        ]
    return events


async def test_old_partitions_are_dropped(
    pg: asyncpg.Connection, schema_name: str, make_settings: Callable[..., TimescaleSettings]
) -> None:
    today = day_of(time.time_ns())
    now = today * DAY + 6 * 3600 * NS_PER_SECOND  # 06:00 today: before the events' noon
    async with TimescaleSink(make_settings(retention="10d", premake_days=1)) as sink:
        await sink.write_batch(_spread(now, 40))
        assert (await list_partitions(pg, schema_name, "trades"))[0] == today - 39
        removed = await sink.enforce_retention(now)
        # Days today-39 .. today-11 end before the cutoff (now - 10d): 29 days of one trade,
        # quote and candle each, plus the 29 gaps that ended before it.
        assert removed == 29 * 4
        for table in ("trades", "quotes", "candles"):
            days = await list_partitions(pg, schema_name, table)
            assert days == list(range(today - 10, today + 2)), table
            assert await pg.fetchval(f"SELECT count(*) FROM {schema_name}.{table}") == 11
        assert await pg.fetchval(f"SELECT count(*) FROM {schema_name}.gaps") == 11
        assert await sink.enforce_retention(now) == 0  # nothing more to drop
        # Writing into a dropped day again recreates its partition (a late backfill).
        await sink.write_batch(_spread(now, 40)[-4:])
        assert (await list_partitions(pg, schema_name, "trades"))[0] == today - 39


async def test_long_and_no_retention_keep_everything(
    pg: asyncpg.Connection, schema_name: str, make_settings: Callable[..., TimescaleSettings]
) -> None:
    settings = make_settings(retention="36500d")
    assert settings.retention == timedelta(days=36500)
    now = time.time_ns()
    async with TimescaleSink(settings) as sink:
        await sink.write_batch(_spread(now, 40))
        assert await sink.enforce_retention(now) == 0
    async with TimescaleSink(make_settings(retention=None)) as sink:
        assert await sink.enforce_retention(now + 1000 * DAY) == 0
    assert await pg.fetchval(f"SELECT count(*) FROM {schema_name}.trades") == 40
