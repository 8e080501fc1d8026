"""The SQLite sink against real database files in ``tmp_path``."""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlite_strategies import T0

from tickwire.events import BookDelta, BookSnapshot, Candle, Event, Gap, Quote, Trade
from tickwire.protocols import CoverageSink, RetentionSink, Sink
from tickwire_sqlite import SqliteSettings, SqliteSink, SqliteSinkError, schema

DAY = 86_400 * 10**9
MIN = 60 * 10**9

TABLES = {
    "trades": "provider, symbol, ts, trade_id IS NULL, ifnull(trade_id, '')",
    "quotes": "provider, symbol, ts",
    "candles": "provider, symbol, interval, start",
    "gaps": "provider, symbol, kind, start",
    "book_snapshots": "provider, symbol, ts",
}


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in key order, read with a separate plain connection."""
    conn = sqlite3.connect(path)
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
            for table, order in TABLES.items()
            if table in names
        }
    finally:
        conn.close()


def make_sink(path: Path, **kwargs: Any) -> SqliteSink:
    return SqliteSink(SqliteSettings(path=path, **kwargs))


def trade(ts: int = T0, trade_id: str | None = "1", **kw: Any) -> Trade:
    fields: dict[str, Any] = {
        "provider": "coinbase",
        "symbol": "BTC-USD",
        "ts": ts,
        "received_ts": ts + 1000,
        "price": Decimal("10101.80000000"),
        "size": Decimal("0.00100000"),
        "side": "buy",
        "trade_id": trade_id,
    }
    fields.update(kw)
    return Trade(**fields)


def candle(
    start: int = T0 // MIN * MIN, source: str = "built", close: str = "2", **kw: Any
) -> Candle:
    fields: dict[str, Any] = {
        "provider": "coinbase",
        "symbol": "BTC-USD",
        "interval": "1m",
        "start": start,
        "open": Decimal("1"),
        "high": Decimal("3"),
        "low": Decimal("0.5"),
        "close": Decimal(close),
        "volume": Decimal("10.0"),
        "trades": 4,
        "source": source,
    }
    fields.update(kw)
    return Candle(**fields)


def mixed_events(n: int, seed: int = 7) -> list[Event]:
    """A deterministic mix of every event kind, with duplicate keys among them."""
    rnd = random.Random(seed)
    out: list[Event] = []
    syms = ["BTC-USD", "ETH-USD", "SOL-USD"]
    for i in range(n):
        sym = rnd.choice(syms)
        ts = T0 + rnd.randrange(0, 3 * DAY)
        price = Decimal(rnd.randrange(1, 10**9)).scaleb(-rnd.randrange(0, 9))
        kind = rnd.random()
        if kind < 0.55:
            tid = None if rnd.random() < 0.2 else str(rnd.randrange(10**6))
            out.append(trade(ts, tid, symbol=sym, price=price, side=rnd.choice([None, "sell"])))
        elif kind < 0.80:
            out.append(
                Quote("coinbase", sym, ts // 10**6 * 10**6, ts, price, None, price + 1, Decimal(i))
            )
        elif kind < 0.92:
            start = T0 // MIN * MIN + rnd.randrange(0, 2000) * MIN
            src = rnd.choice(["stream", "built", "backfill"])
            out.append(candle(start, src, close=str(price), symbol=sym, closed=rnd.random() < 0.7))
        elif kind < 0.94:
            out.append(Gap("coinbase", sym, "trades", ts, ts + rnd.randrange(1, DAY), "sequence"))
        elif kind < 0.97:
            levels = [(price, Decimal("1.50")), (price - 1, Decimal("2"))]
            out.append(BookSnapshot("coinbase", sym, ts, ts + 1, levels, levels[::-1], i))
        else:
            out.append(BookDelta("coinbase", sym, ts, ts + 1, [("bid", price, Decimal(0))], i))
    return out


async def write_in_batches(sink: SqliteSink, events: list[Event], size: int = 5000) -> None:
    for i in range(0, len(events), size):
        await sink.write_batch(events[i : i + size])


# ---- the contract ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_implements_the_sink_protocols(tmp_path: Path) -> None:
    sink = make_sink(tmp_path / "t.db")
    assert isinstance(sink, Sink)
    assert isinstance(sink, RetentionSink)
    assert isinstance(sink, CoverageSink)
    async with sink:
        assert await sink.counts() == {"trades": 0, "quotes": 0, "candles": 0, "gaps": 0}
    assert (tmp_path / "t.db").is_file()


@pytest.mark.anyio
async def test_creates_missing_folders_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "t.db"
    async with make_sink(path, synchronous="full") as sink:
        await sink.write_batch([trade()])
        conn = sink._connection()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert path.is_file()


@pytest.mark.anyio
async def test_page_cache_is_bounded_by_cache_size(tmp_path: Path) -> None:
    async with make_sink(tmp_path / "default.db") as sink:
        assert sink._connection().execute("PRAGMA cache_size").fetchone()[0] == -65536  # KiB
    async with make_sink(tmp_path / "small.db", cache_size=2 * 1024 * 1024) as sink:
        assert sink._connection().execute("PRAGMA cache_size").fetchone()[0] == -2048


@pytest.mark.anyio
async def test_replaying_100k_mixed_events_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "replay.db"
    events = mixed_events(100_000)
    async with make_sink(path, book=True) as sink:
        await write_in_batches(sink, events)
        counts = await sink.counts()
        first = dump(path)
        await write_in_batches(sink, events)
        assert await sink.counts() == counts
    assert dump(path) == first
    assert counts["trades"] > 50_000
    assert all(counts[t] > 0 for t in TABLES)
    # Reopening and replaying once more, in other batch sizes, is still a no-op.
    async with make_sink(path, book=True) as sink:
        await write_in_batches(sink, events, size=777)
    assert dump(path) == first


@pytest.mark.anyio
async def test_columns_are_named_as_the_event_fields(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with make_sink(path, book=True):
        pass
    conn = sqlite3.connect(path)
    for table, cls in [
        ("trades", Trade),
        ("quotes", Quote),
        ("candles", Candle),
        ("gaps", Gap),
        ("book_snapshots", BookSnapshot),
    ]:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        assert columns == list(cls.__struct_fields__)
    conn.close()


@pytest.mark.anyio
async def test_values_are_stored_as_exact_text_and_integer_ns(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with make_sink(path) as sink:
        await sink.write_batch([trade()])
    conn = sqlite3.connect(path)
    row = conn.execute(
        "SELECT typeof(ts), typeof(price), price, size, datetime(ts / 1000000000, 'unixepoch')"
        " FROM trades"
    ).fetchone()
    assert row == ("integer", "text", "10101.80000000", "0.00100000", "2023-11-14 22:13:20")
    conn.close()


# ---- trades ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_trades_without_trade_id_dedupe_and_read_back_as_none(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    batch = [trade(T0, None), trade(T0 + 1, None), trade(T0, ""), trade(T0, "7")]
    async with make_sink(path) as sink:
        await sink.write_batch(batch)
        await sink.write_batch(batch)
        await sink.write_batch([trade(T0, None, price=Decimal("1"))])  # same key: ignored
        stored = await sink.trades("coinbase", "BTC-USD")
    assert sorted(stored, key=lambda t: (t.ts, str(t.trade_id))) == sorted(
        batch, key=lambda t: (t.ts, str(t.trade_id))
    )
    assert [t.trade_id for t in stored if t.trade_id is None] == [None, None]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM trades WHERE trade_id IS NULL").fetchone() == (2,)
    conn.close()


@pytest.mark.anyio
async def test_same_trade_id_at_other_time_or_symbol_is_another_trade(tmp_path: Path) -> None:
    async with make_sink(tmp_path / "t.db") as sink:
        await sink.write_batch(
            [trade(T0, "1"), trade(T0 + 1, "1"), trade(T0, "1", symbol="ETH-USD")]
        )
        assert (await sink.counts())["trades"] == 3


@pytest.mark.anyio
async def test_trades_read_api_range_and_latest(tmp_path: Path) -> None:
    async with make_sink(tmp_path / "t.db") as sink:
        await sink.write_batch([trade(T0 + i, str(i)) for i in range(10)])
        latest = await sink.trades("coinbase", "BTC-USD", limit=3)
        assert [t.trade_id for t in latest] == ["7", "8", "9"]
        ranged = await sink.trades("coinbase", "BTC-USD", start=T0 + 2, end=T0 + 5)
        assert [t.trade_id for t in ranged] == ["2", "3", "4"]
        assert await sink.trades("coinbase", "ETH-USD") == []


# ---- quotes ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_quotes_dedupe_on_time_and_keep_the_last(tmp_path: Path) -> None:
    first = Quote("ig", "CS.D.EURUSD.CFD.IP", T0, T0 + 5, Decimal("1.08"), None, None, None)
    later = Quote("ig", "CS.D.EURUSD.CFD.IP", T0, T0 + 9, Decimal("1.07"), Decimal("2"), None, None)
    async with make_sink(tmp_path / "t.db") as sink:
        await sink.write_batch([first, later])
        await sink.write_batch([first, later])
        assert await sink.quotes("ig", "CS.D.EURUSD.CFD.IP") == [later]


# ---- candles -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_later_candle_write_updates_the_row(tmp_path: Path) -> None:
    forming = candle(close="2", closed=False)
    final = candle(close="2.50", closed=True, trades=9)
    async with make_sink(tmp_path / "t.db") as sink:
        await sink.write_batch([forming])
        await sink.write_batch([final])
        assert await sink.candles("coinbase", "BTC-USD", "1m") == [final]


@pytest.mark.anyio
@pytest.mark.parametrize("provider_source", ["stream", "backfill"])
async def test_a_built_candle_never_overwrites_the_providers_own(
    tmp_path: Path, provider_source: str
) -> None:
    theirs = candle(source=provider_source, close="5")
    built = candle(source="built", close="6")
    async with make_sink(tmp_path / "t.db") as sink:
        await sink.write_batch([theirs])
        await sink.write_batch([built])
        await sink.write_batch([theirs, built])  # also within one batch
        assert await sink.candles("coinbase", "BTC-USD", "1m") == [theirs]


@pytest.mark.anyio
async def test_a_built_candle_with_fewer_trades_keeps_the_stored_one(tmp_path: Path) -> None:
    # A builder restarted mid-bucket (or shown a replayed trade) knows part of the bucket only.
    whole = candle(close="5", trades=7, volume=Decimal("3.5"))
    part = candle(close="6", trades=1, volume=Decimal("0.5"))
    more = candle(close="7", trades=8, volume=Decimal("4"))
    counted_by_quotes = candle(close="8", trades=None, basis="mid")
    async with make_sink(tmp_path / "t.db") as sink:
        await sink.write_batch([whole])
        await sink.write_batch([part])
        await sink.write_batch([whole, part])  # also within one batch
        assert await sink.candles("coinbase", "BTC-USD", "1m") == [whole]
        await sink.write_batch([more])  # a correction adds trades: it replaces
        assert await sink.candles("coinbase", "BTC-USD", "1m") == [more]
        await sink.write_batch([counted_by_quotes])  # no count to compare: the later one
        assert await sink.candles("coinbase", "BTC-USD", "1m") == [counted_by_quotes]


@pytest.mark.anyio
async def test_provider_candles_replace_built_ones_and_each_other(tmp_path: Path) -> None:
    built, stream, backfill = candle(), candle(source="stream"), candle(source="backfill")
    async with make_sink(tmp_path / "t.db") as sink:
        await sink.write_batch([built, stream])
        assert await sink.candles("coinbase", "BTC-USD", "1m") == [stream]
        await sink.write_batch([backfill])
        assert await sink.candles("coinbase", "BTC-USD", "1m") == [backfill]


@pytest.mark.anyio
async def test_candle_starts_gives_the_stored_buckets_in_range(tmp_path: Path) -> None:
    base = T0 // MIN * MIN
    stored = [base + i * MIN for i in (0, 1, 2, 5, 9)]
    async with make_sink(tmp_path / "t.db") as sink:
        await sink.write_batch([candle(s) for s in reversed(stored)])
        await sink.write_batch([candle(base + MIN, interval="5m"), candle(base, symbol="ETH-USD")])
        starts = await sink.candle_starts("coinbase", "BTC-USD", "1m", base + MIN, base + 9 * MIN)
        assert starts == [base + MIN, base + 2 * MIN, base + 5 * MIN]
        assert await sink.candle_starts("coinbase", "BTC-USD", "1m", 0, 2**63 - 1) == stored
        assert await sink.candle_starts("coinbase", "BTC-USD", "1h", 0, 2**63 - 1) == []


# ---- book --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_book_snapshots_are_stored_only_when_book_is_on(tmp_path: Path) -> None:
    bids = [(Decimal("100.10"), Decimal("1.000")), (Decimal("100.00"), Decimal("2"))]
    asks = [(Decimal("100.20"), Decimal("0.5"))]
    snap = BookSnapshot("coinbase", "BTC-USD", T0, T0 + 1, bids, asks, 42)
    delta = BookDelta("coinbase", "BTC-USD", T0 + 2, T0 + 3, [("bid", Decimal("1"), Decimal(0))])
    async with make_sink(tmp_path / "off.db") as sink:
        await sink.write_batch([snap, delta])
        assert await sink.counts() == {"trades": 0, "quotes": 0, "candles": 0, "gaps": 0}
        assert await sink.book_snapshots("coinbase", "BTC-USD") == []
    path = tmp_path / "on.db"
    async with make_sink(path, book=True) as sink:
        await sink.write_batch([snap, delta, snap])
        assert (await sink.counts())["book_snapshots"] == 1
        assert await sink.book_snapshots("coinbase", "BTC-USD") == [snap]
    conn = sqlite3.connect(path)
    bids_text, asks_text = conn.execute("SELECT bids, asks FROM book_snapshots").fetchone()
    assert json.loads(bids_text) == [["100.10", "1.000"], ["100.00", "2"]]
    assert json.loads(asks_text) == [["100.20", "0.5"]]
    conn.close()


# ---- gaps --------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_gaps_status_lifecycle(tmp_path: Path) -> None:
    found = Gap("coinbase", "BTC-USD", "trades", T0, T0 + MIN, "sequence")
    async with make_sink(tmp_path / "t.db") as sink:
        await sink.write_batch([found, found])
        assert await sink.gaps() == [found]

        empty = Gap("coinbase", "BTC-USD", "trades", T0, T0 + MIN, "sequence", status="empty")
        await sink.write_batch([empty])  # a later status updates the row
        assert await sink.gaps() == [empty]
        await sink.write_batch([found])  # found again: still known to be empty, not refetched
        assert await sink.gaps("coinbase", "BTC-USD") == [empty]
        assert await sink.gaps(status="open") == []

        longer = Gap("coinbase", "BTC-USD", "trades", T0, T0 + 2 * MIN, "disconnect")
        await sink.write_batch([longer])  # it grew: the new part is missing again
        assert await sink.gaps(kind="trades") == [longer]

        await sink.mark_gap(longer, "filled")
        assert [g.status for g in await sink.gaps()] == ["filled"]
        await sink.mark_gap(longer, "open")  # mark_gap sets whatever it is told
        assert [g.status for g in await sink.gaps()] == ["open"]

        other = Gap("coinbase", "ETH-USD", "candles:1m", T0, T0 + MIN, "candle")
        await sink.mark_gap(other, "empty")  # a gap never written before is inserted
        assert await sink.gaps(symbol="ETH-USD") == [
            Gap("coinbase", "ETH-USD", "candles:1m", T0, T0 + MIN, "candle", "empty")
        ]

        with pytest.raises(ValueError, match="status"):
            await sink.mark_gap(other, "done")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_a_failed_gap_keeps_its_detail_until_it_is_resolved(tmp_path: Path) -> None:
    found = Gap("coinbase", "BTC-USD", "trades", T0, T0 + MIN, "sequence")
    failed = Gap(
        "coinbase", "BTC-USD", "trades", T0, T0 + MIN, "sequence", "failed", "HTTP 403: no plan"
    )
    async with make_sink(tmp_path / "t.db") as sink:
        await sink.write_batch([found])
        await sink.write_batch([failed])
        assert await sink.gaps(status="failed") == [failed]
        await sink.write_batch([found])  # found again: still failed, and still says why
        assert await sink.gaps() == [failed]
        longer = Gap("coinbase", "BTC-USD", "trades", T0, T0 + 2 * MIN, "sequence")
        await sink.write_batch([longer])  # it grew: open again, the old reason no longer holds
        assert await sink.gaps() == [longer]
        await sink.write_batch([failed])
        filled = Gap("coinbase", "BTC-USD", "trades", T0, T0 + MIN, "sequence", "filled")
        await sink.write_batch([filled])  # a later fill clears the reason
        assert await sink.gaps() == [filled]
        await sink.mark_gap(found, "failed", "gave up")
        assert [(g.status, g.detail) for g in await sink.gaps()] == [("failed", "gave up")]


@pytest.mark.anyio
async def test_a_version_1_file_migrates_and_then_stores_failed_gaps(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in schema.MIGRATIONS[0]:  # the file as tickwire-sqlite 1 wrote it
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.execute(
        "INSERT INTO gaps VALUES ('coinbase', 'BTC-USD', 'trades', ?, ?, 'sequence', 'empty')",
        (T0, T0 + MIN),
    )
    with pytest.raises(sqlite3.IntegrityError):  # the old CHECK knows no failed gap
        conn.execute("INSERT INTO gaps VALUES ('c', 'X', 'trades', 1, 2, 'sequence', 'failed')")
    conn.execute("INSERT INTO trades VALUES ('coinbase', 'BTC-USD', 1, 1, '1', '1', NULL, 'a')")
    conn.close()

    failed = Gap("coinbase", "ETH-USD", "candles:1m", T0, T0 + MIN, "candle", "failed", "refused")
    async with make_sink(path) as sink:
        old = Gap("coinbase", "BTC-USD", "trades", T0, T0 + MIN, "sequence", "empty")
        assert await sink.gaps() == [old]  # kept, with no detail
        await sink.write_batch([failed])
        assert await sink.gaps(status="failed") == [failed]
        assert (await sink.counts())["trades"] == 1
    conn = sqlite3.connect(path, isolation_level=None)
    assert schema.schema_version(conn) == schema.SCHEMA_VERSION == 2
    assert schema.migrate(conn) == 0
    with pytest.raises(sqlite3.IntegrityError):  # the new CHECK still refuses nonsense
        conn.execute(
            'INSERT INTO gaps (provider, symbol, kind, start, "end", reason, status)'
            " VALUES ('c', 'X', 'trades', 1, 2, 'sequence', 'done')"
        )
    conn.close()


# ---- retention ---------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_retention_deletes_exactly_the_rows_older_by_event_time(tmp_path: Path) -> None:
    now = T0 + 10 * DAY
    cutoff = now - 7 * DAY
    old_times, new_times = [cutoff - 2 * DAY, cutoff - 1], [cutoff, cutoff + 1, now]
    events: list[Event] = []
    for ts in old_times + new_times:
        # received_ts is "now" for all of them: retention must look at ts, not at arrival.
        events.append(trade(ts, None, received_ts=now))
        events.append(Quote("coinbase", "BTC-USD", ts, now, Decimal(1), None, Decimal(2), None))
        events.append(candle(ts, symbol="ETH-USD"))
        events.append(BookSnapshot("coinbase", "BTC-USD", ts, now, [], []))
    old_gap = Gap("coinbase", "BTC-USD", "trades", cutoff - DAY, cutoff - 1, "disconnect")
    straddling = Gap("coinbase", "BTC-USD", "trades", cutoff - 2 * DAY, cutoff + 1, "sequence")
    events += [old_gap, straddling]
    async with make_sink(tmp_path / "t.db", retention=timedelta(days=7), book=True) as sink:
        await sink.write_batch(events)
        deleted = await sink.enforce_retention(now)
        assert deleted == 4 * len(old_times) + 1
        assert [t.ts for t in await sink.trades("coinbase", "BTC-USD")] == new_times
        assert [q.ts for q in await sink.quotes("coinbase", "BTC-USD")] == new_times
        assert [c.start for c in await sink.candles("coinbase", "ETH-USD", "1m")] == new_times
        assert [b.ts for b in await sink.book_snapshots("coinbase", "BTC-USD")] == new_times
        assert await sink.gaps() == [straddling]
        assert await sink.enforce_retention(now) == 0
        # History replayed later is judged by its own date: dropped again.
        await sink.write_batch(events)
        assert await sink.enforce_retention(now) == 4 * len(old_times) + 1


@pytest.mark.anyio
async def test_a_very_long_retention_keeps_old_history(tmp_path: Path) -> None:
    settings = SqliteSettings(path=tmp_path / "t.db", retention="36500d")  # type: ignore[arg-type]
    assert settings.retention == timedelta(days=36500)
    year_1971 = 365 * DAY
    async with SqliteSink(settings) as sink:
        await sink.write_batch([trade(year_1971, "a"), trade(T0, "b"), candle(year_1971)])
        assert await sink.enforce_retention(T0 + DAY) == 0
        assert (await sink.counts())["trades"] == 2
        # A retention longer than int64 nanoseconds can express is "keep everything".
    settings = SqliteSettings(path=tmp_path / "t.db", retention="200000d")  # type: ignore[arg-type]
    async with SqliteSink(settings) as sink:
        assert await sink.enforce_retention(T0) == 0


@pytest.mark.anyio
async def test_no_retention_keeps_everything(tmp_path: Path) -> None:
    async with make_sink(tmp_path / "t.db", retention=None) as sink:
        await sink.write_batch([trade(1, "a")])
        assert await sink.enforce_retention(T0) == 0
        assert (await sink.counts())["trades"] == 1


# ---- schema and migrations ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_opening_twice_migrates_once(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with make_sink(path) as sink:
        await sink.write_batch([trade()])
    async with make_sink(path, book=True) as sink:  # reopen, now with books: adds the table
        assert await sink.counts() == {
            "trades": 1,
            "quotes": 0,
            "candles": 0,
            "gaps": 0,
            "book_snapshots": 0,
        }
    conn = sqlite3.connect(path, isolation_level=None)
    assert schema.schema_version(conn) == schema.SCHEMA_VERSION
    assert schema.migrate(conn) == 0
    assert schema.migrate(conn, book=True) == 0
    conn.close()


@pytest.mark.anyio
async def test_many_sinks_opening_one_new_file_at_once(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    sinks = [make_sink(path) for _ in range(6)]

    async def open_and_write(i: int, sink: SqliteSink) -> None:
        await sink.open()
        await sink.write_batch([trade(T0 + i, str(i)), trade(T0, "shared")])

    async with anyio.create_task_group() as tg:
        for i, sink in enumerate(sinks):
            tg.start_soon(open_and_write, i, sink)
    counts = await sinks[0].counts()
    for sink in sinks:
        await sink.aclose()
    assert counts["trades"] == 7


@pytest.mark.anyio
async def test_a_newer_schema_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SqliteSinkError, match="newer") as info:
        await make_sink(path).open()
    assert str(path) in str(info.value)


# ---- failures ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_failed_batch_raises_and_keeps_nothing_of_it(tmp_path: Path) -> None:
    async with make_sink(tmp_path / "t.db") as sink:
        bad = [trade(T0, "1"), candle(), trade(2**64, "2")]  # ts beyond SQLite's int64
        with pytest.raises(SqliteSinkError, match="write a batch of 3 events"):
            await sink.write_batch(bad)
        assert await sink.counts() == {"trades": 0, "quotes": 0, "candles": 0, "gaps": 0}
        await sink.write_batch(bad[:2])  # the sink is still usable
        assert (await sink.counts())["trades"] == 1


@pytest.mark.anyio
async def test_a_locked_database_fails_the_batch_and_the_retry_succeeds(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    async with make_sink(path, busy_timeout=timedelta(milliseconds=50)) as sink:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(SqliteSinkError, match="locked"):
            await sink.write_batch([trade()])
        other.execute("ROLLBACK")
        other.close()
        await sink.write_batch([trade()])
        assert (await sink.counts())["trades"] == 1


@pytest.mark.anyio
async def test_using_a_closed_sink_says_so(tmp_path: Path) -> None:
    sink = make_sink(tmp_path / "t.db")
    with pytest.raises(SqliteSinkError, match="not open"):
        await sink.write_batch([trade()])
    await sink.open()
    await sink.aclose()
    await sink.aclose()  # twice is fine
    with pytest.raises(SqliteSinkError, match="not open"):
        await sink.write_batch([trade()])


def test_many_processes_opening_one_new_file_at_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "procs.db"
    code = """
import sys, anyio
from decimal import Decimal
from tickwire.events import Trade
from tickwire_sqlite import SqliteSettings, SqliteSink

async def main(i: int) -> None:
    async with SqliteSink(SqliteSettings(path=sys.argv[1])) as sink:
        one = Decimal("1.0")
        trades = [Trade("p", "S", n, n, one, one, None, str(n)) for n in range(500)]
        await sink.write_batch(trades + [Trade("p", "S", 10**6 + i, 0, Decimal(1), Decimal(1))])

anyio.run(main, int(sys.argv[2]))
"""
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path), str(i)], stderr=subprocess.PIPE)
        for i in range(5)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
    assert conn.execute("SELECT count(*) FROM trades").fetchone() == (505,)
    conn.close()
