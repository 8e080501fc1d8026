"""The sink against the real PostgreSQL: contract, keys, update rules, partitions on demand."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import asyncpg
import msgspec
import pytest

from tickwire.events import NS_PER_SECOND, BookSnapshot, Candle, Gap, Quote, Trade
from tickwire.testing.sink import PROVIDER, check_sink
from tickwire_timescale import TimescaleSettings, TimescaleSink, TimescaleSinkError

pytestmark = [pytest.mark.anyio, pytest.mark.service]

DAY = 86_400 * NS_PER_SECOND
TABLE_OF = {"trade": "trades", "quote": "quotes", "candle": "candles", "gap": "gaps"}


def _now_minute() -> int:
    now = time.time_ns()
    return now - now % (60 * NS_PER_SECOND) - 3600 * NS_PER_SECOND


async def test_conformance(
    pg: asyncpg.Connection, schema_name: str, make_settings: Callable[..., TimescaleSettings]
) -> None:
    async def count(kind: str) -> int:
        return int(
            await pg.fetchval(
                f"SELECT count(*) FROM {schema_name}.{TABLE_OF[kind]} WHERE provider = $1",
                PROVIDER,
            )
        )

    await check_sink(
        lambda: TimescaleSink(make_settings(retention="2d")), count, retention_s=2 * 86400
    )


async def test_values_round_trip_exactly(sink: TimescaleSink, schema_name: str) -> None:
    ts = 1_700_000_000_123_456_789  # nanoseconds: stored to the microsecond
    trade = Trade("p", "BTC-USD", ts, ts + 5_000, Decimal("10101.80000000"), Decimal("1E-8"), "buy")
    await sink.write_batch([trade])
    row = await sink.pool.fetchrow(f"SELECT * FROM {schema_name}.trades")
    assert row is not None
    assert row["ts"] == 1_700_000_000_123_456_000
    assert row["received_ts"] == 1_700_000_000_123_461_000
    assert str(row["price"]) == "10101.80000000"
    assert row["size"] == Decimal("1E-8")
    assert row["trade_id"] == ""  # no id: the '' sentinel, so the key still dedupes
    text = await sink.pool.fetchval(f"SELECT ts::text FROM {schema_name}.trades")
    assert text == "2023-11-14 22:13:20.123456+00"


async def test_trades_without_id_dedupe_but_distinct_ids_do_not(
    sink: TimescaleSink, schema_name: str
) -> None:
    ts = _now_minute()
    same = Trade("p", "X", ts, ts, Decimal(1), Decimal(1))
    # A replayed id-less trade is stored once; so is one differing only below the microsecond.
    await sink.write_batch([same, same, msgspec.structs.replace(same, ts=ts + 999)])
    await sink.write_batch([same])
    ids = [Trade("p", "X", ts, ts, Decimal(1), Decimal(1), None, str(i)) for i in range(3)]
    await sink.write_batch(ids + ids)
    assert await sink.pool.fetchval(f"SELECT count(*) FROM {schema_name}.trades") == 4


async def test_quotes_in_one_microsecond_keep_the_last(
    sink: TimescaleSink, schema_name: str
) -> None:
    ts = _now_minute()
    first = Quote("p", "X", ts, ts, Decimal(1), None, Decimal(2), None)
    last = Quote("p", "X", ts + 500, ts + 600, Decimal("1.5"), Decimal(3), Decimal(2), None)
    await sink.write_batch([first, last])  # one µs key twice in a batch: no "row a second time"
    got = await sink.latest_quote("p", "X")
    assert got is not None
    assert (got.bid, got.bid_size) == (Decimal("1.5"), Decimal(3))
    assert got.ts == ts  # floored to the microsecond
    await sink.write_batch([first])  # a later write of the same key updates it
    got = await sink.latest_quote("p", "X")
    assert got is not None
    assert got.bid == Decimal(1)
    assert await sink.pool.fetchval(f"SELECT count(*) FROM {schema_name}.quotes") == 1


def _candle(
    start: int, close: str, source: str, closed: bool = True, trades: int | None = 2
) -> Candle:
    return Candle(
        "p",
        "X",
        "1m",
        start,
        Decimal(1),
        Decimal(3),
        Decimal(1),
        Decimal(close),
        Decimal(5),
        trades,
        closed=closed,
        source=source,  # type: ignore[arg-type]
    )


async def test_built_candle_never_overwrites_a_provider_candle(
    sink: TimescaleSink, schema_name: str
) -> None:
    start = _now_minute()
    q = f"SELECT close, source, closed FROM {schema_name}.candles WHERE start = $1"
    await sink.write_batch([_candle(start, "2", "built", closed=False)])
    await sink.write_batch([_candle(start, "2.5", "built")])  # built updates built
    assert tuple(await sink.pool.fetchrow(q, start)) == (Decimal("2.5"), "built", True)
    await sink.write_batch([_candle(start, "2.4", "stream")])  # stream replaces built
    assert tuple(await sink.pool.fetchrow(q, start)) == (Decimal("2.4"), "stream", True)
    await sink.write_batch([_candle(start, "9", "built")])  # built never replaces stream
    assert tuple(await sink.pool.fetchrow(q, start)) == (Decimal("2.4"), "stream", True)
    await sink.write_batch([_candle(start, "2.6", "backfill")])
    assert tuple(await sink.pool.fetchrow(q, start)) == (Decimal("2.6"), "backfill", True)
    # within one batch the same rule holds
    nxt = start + 60 * NS_PER_SECOND
    await sink.write_batch([_candle(nxt, "7", "stream"), _candle(nxt, "8", "built")])
    assert tuple(await sink.pool.fetchrow(q, nxt)) == (Decimal(7), "stream", True)
    assert await sink.candle_starts("p", "X", "1m", start, nxt + 1) == [start, nxt]
    assert await sink.candle_starts("p", "X", "1m", start + 1, nxt) == []


async def test_a_built_candle_with_fewer_trades_keeps_the_stored_one(
    sink: TimescaleSink, schema_name: str
) -> None:
    # A builder restarted mid-bucket (or shown a replayed trade) knows part of the bucket only.
    start = _now_minute()
    q = f"SELECT close, trades FROM {schema_name}.candles WHERE start = $1"
    await sink.write_batch([_candle(start, "5", "built", trades=7)])
    await sink.write_batch([_candle(start, "6", "built", trades=1)])
    assert tuple(await sink.pool.fetchrow(q, start)) == (Decimal(5), 7)
    nxt = start + 60 * NS_PER_SECOND  # within one batch alike
    await sink.write_batch([_candle(nxt, "5", "built", trades=7), _candle(nxt, "6", "built", 1)])
    assert tuple(await sink.pool.fetchrow(q, nxt)) == (Decimal(5), 7)
    await sink.write_batch([_candle(start, "7", "built", trades=8)])  # a correction: replaces
    assert tuple(await sink.pool.fetchrow(q, start)) == (Decimal(7), 8)
    await sink.write_batch([_candle(start, "8", "built", trades=None)])  # no count: replaces
    assert tuple(await sink.pool.fetchrow(q, start)) == (Decimal(8), None)


async def test_gap_status_is_updated_by_later_writes(sink: TimescaleSink) -> None:
    start = _now_minute()
    gap = Gap("p", "X", "trades", start, start + 10 * NS_PER_SECOND, "disconnect")
    await sink.write_batch([gap])
    assert [g.status for g in await sink.gaps("p", "X")] == ["open"]
    await sink.write_batch([msgspec.structs.replace(gap, status="empty")])
    assert [g.status for g in await sink.gaps("p", "X")] == ["empty"]
    await sink.write_batch([gap])  # found again, same span: an empty gap stays empty
    assert await sink.gaps("p", "X", status="empty") == [
        msgspec.structs.replace(gap, status="empty")
    ]
    grown = msgspec.structs.replace(gap, end=gap.end + NS_PER_SECOND)
    await sink.write_batch([grown])  # it grew: its new part is missing, so it is open again
    assert await sink.gaps(status="open") == [grown]
    await sink.write_batch([msgspec.structs.replace(grown, status="filled")])
    assert [g.status for g in await sink.gaps()] == ["filled"]


async def test_a_failed_gap_keeps_its_detail_until_it_is_resolved(sink: TimescaleSink) -> None:
    start = _now_minute()
    gap = Gap("p", "X", "trades", start, start + 10 * NS_PER_SECOND, "disconnect")
    failed = msgspec.structs.replace(gap, status="failed", detail="HTTP 403: not on this plan")
    await sink.write_batch([gap])
    await sink.write_batch([failed])
    assert await sink.gaps("p", "X", status="failed") == [failed]
    await sink.write_batch([gap])  # found again: still failed, still says why
    assert await sink.gaps("p", "X") == [failed]
    await sink.write_batch([gap, failed, gap])  # the same rule within one batch
    assert await sink.gaps("p", "X") == [failed]
    filled = msgspec.structs.replace(gap, status="filled")
    await sink.write_batch([filled])  # a later fill clears the reason
    assert await sink.gaps("p", "X") == [filled]


async def test_backfilled_history_gets_its_partitions(
    sink: TimescaleSink, schema_name: str
) -> None:
    old = 1_262_304_000 * NS_PER_SECOND  # 2010-01-01, long before any premade partition
    events = [
        Trade("p", "X", old + i * DAY, old, Decimal(1), Decimal(1), None, str(i)) for i in range(3)
    ]
    events.append(_candle(old, "2", "backfill"))
    await sink.write_batch(events)
    assert await sink.pool.fetchval(f"SELECT count(*) FROM {schema_name}.trades") == 3
    names = {
        r[0]
        for r in await sink.pool.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relispartition",
            schema_name,
        )
    }
    assert {"trades_p20100101", "trades_p20100102", "trades_p20100103"} <= names
    assert "candles_p20100101" in names


async def test_partition_dropped_elsewhere_is_recreated_on_retry(
    sink: TimescaleSink, schema_name: str, pg: asyncpg.Connection
) -> None:
    old = 1_262_304_000 * NS_PER_SECOND
    trade = Trade("p", "X", old, old, Decimal(1), Decimal(1), None, "a")
    await sink.write_batch([trade])
    await pg.execute(f"DROP TABLE {schema_name}.trades_p20100101")  # "another process"
    with pytest.raises(TimescaleSinkError, match="no partition"):
        await sink.write_batch([trade])
    await sink.write_batch([trade])  # what the runner's retry does
    assert await sink.pool.fetchval(f"SELECT count(*) FROM {schema_name}.trades") == 1


async def test_a_trades_only_batch_is_all_or_nothing(
    sink: TimescaleSink, schema_name: str, pg: asyncpg.Connection
) -> None:
    # A batch of trades alone is one COPY without BEGIN/COMMIT: it must still store all of
    # its rows or none.
    day = 1_262_304_000 * NS_PER_SECOND
    first, second = (
        Trade("p", "X", day + i * DAY, day, Decimal(1), Decimal(1), None, "a") for i in range(2)
    )
    await sink.write_batch([first, second])
    await pg.execute(f"DROP TABLE {schema_name}.trades_p20100102")  # "another process"
    later = msgspec.structs.replace(first, ts=first.ts + NS_PER_SECOND)
    with pytest.raises(TimescaleSinkError, match="no partition"):
        await sink.write_batch([later, second])
    stored = await sink.pool.fetch(f"SELECT ts FROM {schema_name}.trades")
    assert [r[0] for r in stored] == [first.ts]  # nothing of the failed batch
    await sink.write_batch([later, second])  # the runner's retry recreates the partition
    assert await sink.pool.fetchval(f"SELECT count(*) FROM {schema_name}.trades") == 3


async def test_book_snapshots_with_book_on(
    make_settings: Callable[..., TimescaleSettings], schema_name: str
) -> None:
    ts = _now_minute()
    snap = BookSnapshot(
        "p",
        "X",
        ts,
        ts,
        [(Decimal("99.5"), Decimal(2)), (Decimal(99), Decimal("0.1"))],
        [(Decimal("100.5"), Decimal(1))],
        42,
    )
    async with TimescaleSink(make_settings(book=True)) as sink:
        await sink.write_batch([snap, snap])
        row = await sink.pool.fetchrow(
            f"SELECT bids, asks, sequence FROM {schema_name}.book_snapshots"
        )
        assert row is not None
        assert row["bids"] == [[Decimal("99.5"), Decimal(2)], [Decimal(99), Decimal("0.1")]]
        assert row["asks"] == [[Decimal("100.5"), Decimal(1)]]
        assert row["sequence"] == 42
    async with TimescaleSink(make_settings(book=False)) as sink:
        await sink.write_batch([snap])  # ignored without book = true
        assert await sink.pool.fetchval(f"SELECT count(*) FROM {schema_name}.book_snapshots") == 1


async def test_write_before_open_raises(make_settings: Callable[..., TimescaleSettings]) -> None:
    with pytest.raises(TimescaleSinkError, match="not open"):
        await TimescaleSink(make_settings()).write_batch(
            [Trade("p", "X", 1, 1, Decimal(1), Decimal(1))]
        )


async def test_two_writers_creating_the_same_partitions_at_once(
    make_settings: Callable[..., TimescaleSettings], schema_name: str
) -> None:
    import anyio

    old = 1_262_304_000 * NS_PER_SECOND  # days no partition exists for yet
    batch = [
        Trade("p", "X", old + i * DAY // 4, old, Decimal(1), Decimal(1), None, str(i))
        for i in range(40)  # ten days
    ]
    sinks = [TimescaleSink(make_settings()) for _ in range(3)]
    try:
        for s in sinks:
            await s.open()
        async with anyio.create_task_group() as tg:
            for s in sinks:
                tg.start_soon(s.write_batch, batch)
        count = await sinks[0].pool.fetchval(f"SELECT count(*) FROM {schema_name}.trades")
        assert count == 40
    finally:
        for s in sinks:
            await s.aclose()


async def test_a_batch_of_new_and_stored_rows_takes_the_upsert_path(
    sink: TimescaleSink, schema_name: str
) -> None:
    ts = _now_minute()
    one = Decimal(1)
    trades = [Trade("p", "X", ts + i, ts, one, one, None, str(i)) for i in range(0, 20_000, 1000)]
    quotes = [Quote("p", "X", ts + i * 1000, ts, one, None, one, None) for i in range(20)]
    await sink.write_batch(trades[:10] + quotes[:10])  # all new: the COPY fast path
    changed = [msgspec.structs.replace(q, bid=Decimal(2)) for q in quotes]
    await sink.write_batch(trades + changed)  # half stored already: COPY fails, upsert runs
    assert await sink.pool.fetchval(f"SELECT count(*) FROM {schema_name}.trades") == 20
    bids = await sink.pool.fetch(f"SELECT bid FROM {schema_name}.quotes")
    assert sorted(r[0] for r in bids) == [Decimal(2)] * 20  # later quotes replaced stored ones


async def test_datetimes_are_accepted_as_query_arguments(sink: TimescaleSink) -> None:
    from datetime import UTC, datetime

    moment = datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    got = await sink.pool.fetchval("SELECT $1::timestamptz", moment)
    assert got == 1_700_000_000_123_456_000
