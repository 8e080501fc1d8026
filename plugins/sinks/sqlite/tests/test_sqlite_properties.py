"""Property tests: exact decimals, and idempotent writes of any events."""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlite_strategies import T0, candles, decimals, events, trades

from tickwire.events import Candle, Event, Quote, Trade
from tickwire_sqlite import SqliteSettings, SqliteSink

T = TypeVar("T")


def with_sink(body: Callable[[SqliteSink], Awaitable[T]], **kwargs: object) -> T:
    """Run ``body`` against a sink on a fresh file (hypothesis examples need their own)."""

    async def main() -> T:
        with tempfile.TemporaryDirectory() as folder:
            sink = SqliteSink(SqliteSettings(path=Path(folder) / "t.db", **kwargs))  # type: ignore[arg-type]
            async with sink:
                return await body(sink)

    return anyio.run(main)


@settings(max_examples=60, deadline=None)
@given(st.lists(decimals, min_size=1, max_size=30))
def test_any_finite_decimal_survives_exactly(values: list[Decimal]) -> None:
    values += [Decimal("10101.80000000"), Decimal("-0"), Decimal("1E+30"), Decimal("0E-12")]

    async def body(sink: SqliteSink) -> None:
        batch: list[Event] = []
        for i, value in enumerate(values):
            batch.append(Trade("p", "S", T0 + i, T0, value, value, None, None))
            batch.append(Quote("p", "S", T0 + i, T0, value, value, value, None))
        await sink.write_batch(batch)
        stored_trades = await sink.trades("p", "S")
        stored_quotes = await sink.quotes("p", "S")
        for value, t, q in zip(values, stored_trades, stored_quotes, strict=True):
            for got in (t.price, t.size, q.bid, q.bid_size, q.ask):
                assert got == value
                assert str(got) == str(value)  # same digits, same exponent: the same text
                assert isinstance(got, Decimal)
            assert q.ask_size is None

    with_sink(body)


@settings(max_examples=40, deadline=None)
@given(st.lists(events, max_size=60))
def test_any_events_written_twice_store_what_written_once_stores(batch: list[Event]) -> None:
    async def body(sink: SqliteSink) -> tuple[dict[str, int], dict[str, int]]:
        await sink.write_batch(batch)
        once = await sink.counts()
        await sink.write_batch(batch)
        await sink.write_batch(batch[::-1][: len(batch) // 2])
        return once, await sink.counts()

    once, twice = with_sink(body, book=True)
    assert once == twice


@settings(max_examples=60, deadline=None)
@given(st.lists(trades(), max_size=40))
def test_stored_trades_are_the_first_of_each_key(batch: list[Trade]) -> None:
    expected: dict[tuple[str, str, str | None, int], Trade] = {}
    for t in batch:
        expected.setdefault((t.provider, t.symbol, t.trade_id, t.ts), t)

    async def body(sink: SqliteSink) -> list[Trade]:
        await sink.write_batch(batch)
        await sink.write_batch(batch)
        out: list[Trade] = []
        for provider, symbol in {(t.provider, t.symbol) for t in batch}:
            out += await sink.trades(provider, symbol)
        return out

    stored = with_sink(body)
    assert sorted(stored, key=repr) == sorted(expected.values(), key=repr)


@settings(max_examples=60, deadline=None)
@given(st.lists(candles(), max_size=40))
def test_stored_candles_follow_the_source_rule(batch: list[Candle]) -> None:
    # Model: a later write replaces the row unless it is built and the row is not, or both
    # are built and it counts fewer trades.
    expected: dict[tuple[str, str, str, int], Candle] = {}
    for c in batch:
        key = (c.provider, c.symbol, c.interval, c.start)
        old = expected.get(key)
        if (
            old is None
            or c.source != "built"
            or (
                old.source == "built"
                and (c.trades is None or old.trades is None or c.trades >= old.trades)
            )
        ):
            expected[key] = c

    async def body(sink: SqliteSink) -> list[Candle]:
        for c in batch:  # one per batch and all in one: the same result
            await sink.write_batch([c])
        await sink.write_batch(batch)
        out: list[Candle] = []
        for provider, symbol, interval in {(c.provider, c.symbol, c.interval) for c in batch}:
            out += await sink.candles(provider, symbol, interval)
        return out

    stored = with_sink(body)
    assert sorted(stored, key=repr) == sorted(expected.values(), key=repr)
