"""The Redis sink against the real server on 127.0.0.1:6379 (one key prefix per test)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import anyio
import msgspec
import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from tickwire._plugins import Plugins
from tickwire.events import (
    NS_PER_SECOND,
    BookDelta,
    BookSnapshot,
    Candle,
    Event,
    Gap,
    Quote,
    Trade,
    from_json,
    to_json,
)
from tickwire.protocols import RetentionSink, Sink
from tickwire_redis import RedisSettings, RedisSink
from tickwire_redis.sink import trade_identity

pytestmark = [pytest.mark.anyio, pytest.mark.service]

MakeSink = Callable[..., RedisSink]
MINUTE = 60 * NS_PER_SECOND
D = Decimal


def now_ns() -> int:
    return time.time_ns()


def trade(ts: int, i: int, symbol: str = "BTC-USD", tid: str | None = "auto") -> Trade:
    return Trade(
        "cb",
        symbol,
        ts,
        ts + 1000,
        D("100.5") + i,
        D("0.25"),
        "buy",
        str(i) if tid == "auto" else tid,
    )


def candle(
    start: int,
    close: str = "2",
    source: str = "built",
    interval: str = "1m",
    trades: int | None = 4,
) -> Candle:
    return Candle(
        "cb",
        "BTC-USD",
        interval,
        start,
        D(1),
        D(3),
        D("0.5"),
        D(close),  # type: ignore[arg-type]
        D(10),
        trades,
        source=source,
    )  # type: ignore[arg-type]


async def stream(client: aioredis.Redis, key: str) -> list[Trade]:
    entries = await client.xrange(key)
    return [from_json(fields[b"json"]) for _, fields in entries]  # type: ignore[misc]


async def zcandles(client: aioredis.Redis, key: str) -> list[Candle]:
    return [from_json(m) for m in await client.zrange(key, 0, -1)]  # type: ignore[misc]


def every_kind(base: int) -> list[Event]:
    return [
        trade(base, 1),
        Quote("cb", "BTC-USD", base, base + 5, D("100.1"), D(2), D("100.2"), None),
        candle(base - base % MINUTE),
        BookSnapshot("cb", "BTC-USD", base, base + 5, [(D(100), D(1))], [(D(101), D(2))], 7),
        Gap("cb", "BTC-USD", "trades", base - NS_PER_SECOND, base, "sequence"),
    ]


# ---- plugin and settings ----------------------------------------------------------------------


async def test_registers_the_redis_sink_through_its_entry_point() -> None:
    plugins = Plugins()
    info = plugins.sink("redis")
    assert info.settings is RedisSettings
    sink = plugins.sink_for(RedisSettings())
    assert isinstance(sink, RedisSink)
    assert isinstance(sink, Sink)
    assert isinstance(sink, RetentionSink)


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    s = RedisSettings()
    assert (s.url, s.prefix, s.retention, s.publish) == (
        "redis://127.0.0.1:6379/0",
        "tickwire",
        timedelta(days=1),
        True,
    )
    monkeypatch.setenv("TICKWIRE_REDIS_PASSWORD", "hunter2")
    monkeypatch.setenv("TICKWIRE_REDIS_RETENTION", "12h")
    s = RedisSettings()
    assert s.retention == timedelta(hours=12)
    assert "hunter2" not in repr(s)
    assert s.password is not None and s.password.get_secret_value() == "hunter2"


@pytest.mark.parametrize(
    ("keys", "words"),
    [
        ({"url": "redis://:pw@127.0.0.1:6379/0"}, "password"),
        ({"url": "http://127.0.0.1"}, "redis://"),
        ({"retention": None}, "retention"),
        ({"book_depth": 0}, "book_depth"),
        ({"nope": 1}, "nope"),
    ],
)
def test_settings_refuse_bad_values(keys: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        RedisSettings(**keys)  # type: ignore[arg-type]


async def test_unreachable_redis_raises_instead_of_swallowing() -> None:
    sink = RedisSink(RedisSettings(url="redis://127.0.0.1:1/0", socket_timeout=1))
    with pytest.raises(RedisConnectionError):
        await sink.open()
    with pytest.raises(RedisConnectionError):
        await sink.write_batch(every_kind(now_ns()))
    await sink.aclose()


async def test_a_server_side_error_raises_and_the_retry_completes_the_batch(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    await client.set(f"{prefix}:quote:cb:BTC-USD", "not a hash", px=60_000)
    sink = make_sink()
    await sink.open()
    events = every_kind(now_ns())
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await sink.write_batch(events)
    await client.delete(f"{prefix}:quote:cb:BTC-USD")
    await sink.write_batch(events)  # what the runner does next: the same batch again
    trades = await stream(client, f"{prefix}:trade:cb:BTC-USD")
    quote = await client.hgetall(f"{prefix}:quote:cb:BTC-USD")
    await sink.aclose()
    assert trades == [events[0]]
    assert quote[b"bid"] == b"100.1"


# ---- layout, encoding, TTLs -------------------------------------------------------------------


async def test_key_layout_types_and_a_ttl_on_every_key(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    sink = make_sink(retention="2h")
    await sink.open()
    base = now_ns()
    await sink.write_batch(every_kind(base))
    # A late trade (older than the stream's newest) also creates the stream's "late" set.
    await sink.write_batch([trade(base - NS_PER_SECOND, 2)])
    await sink.aclose()

    keys = {
        k.decode(): (await client.type(k)).decode()
        async for k in client.scan_iter(match=f"{prefix}:*")
    }
    assert keys == {
        f"{prefix}:trade:cb:BTC-USD": "stream",
        f"{prefix}:trade:cb:BTC-USD:late": "zset",
        f"{prefix}:quote:cb:BTC-USD": "hash",
        f"{prefix}:candle:cb:BTC-USD:1m": "zset",
        f"{prefix}:book:cb:BTC-USD": "hash",
        f"{prefix}:gap:cb:BTC-USD": "hash",
    }
    for key in keys:
        ttl = await client.pttl(key)
        assert 0 < ttl <= 2 * 3600 * 1000, (key, ttl)

    q = await client.hgetall(f"{prefix}:quote:cb:BTC-USD")
    assert q == {
        b"provider": b"cb",
        b"symbol": b"BTC-USD",
        b"ts": str(base).encode(),
        b"received_ts": str(base + 5).encode(),
        b"bid": b"100.1",
        b"bid_size": b"2",
        b"ask": b"100.2",
        b"ask_size": b"",
    }
    book = await client.hgetall(f"{prefix}:book:cb:BTC-USD")
    assert book[b"bids"] == b'[["100","1"]]' and book[b"asks"] == b'[["101","2"]]'
    assert book[b"sequence"] == b"7"
    gaps = await client.hgetall(f"{prefix}:gap:cb:BTC-USD")
    gap = every_kind(base)[4]
    assert gaps == {f"trades:{gap.start}".encode(): to_json(gap)}  # type: ignore[union-attr]

    entries = await client.xrange(f"{prefix}:trade:cb:BTC-USD")
    first_id, fields = entries[0]
    assert first_id == f"{base // 1_000_000}-{base % 1_000_000 * 1000}".encode()
    assert fields == {b"id": b"1", b"json": to_json(trade(base, 1))}
    assert [t.trade_id for t in await stream(client, f"{prefix}:trade:cb:BTC-USD")] == ["1", "2"]
    assert await zcandles(client, f"{prefix}:candle:cb:BTC-USD:1m") == [every_kind(base)[2]]
    score = await client.zscore(f"{prefix}:candle:cb:BTC-USD:1m", to_json(every_kind(base)[2]))
    assert score == (base - base % MINUTE) // 1_000_000


async def test_only_the_newest_quote_of_a_batch_is_written_and_published(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    base = now_ns()
    quotes = [
        Quote("cb", "ETH-USD", base + i, base + i, D(i), D(1), D(i + 1), D(1)) for i in (3, 9, 1)
    ]  # out of order: ts base+9 is the newest
    async with client.pubsub() as ps:
        await ps.subscribe(f"{prefix}:quote:cb:ETH-USD")
        await ps.get_message(timeout=1)  # the subscribe confirmation
        sink = make_sink()
        await sink.open()
        await sink.write_batch(quotes)
        await sink.aclose()
        got = await receive(ps, 1)
        assert await ps.get_message(timeout=0.2) is None
    assert got == [quotes[1]]
    stored = await client.hgetall(f"{prefix}:quote:cb:ETH-USD")
    assert stored[b"bid"] == b"9" and stored[b"ts"] == str(base + 9).encode()


# ---- trades: idempotent ids, trimming ---------------------------------------------------------


async def test_a_retried_or_overlapping_batch_adds_no_trade_twice(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    base = now_ns() - MINUTE
    batch: list[Event] = [trade(base + i * 1000, i) for i in range(200)]
    # Three distinct prints at the same nanosecond, one without a trade id.
    batch += [
        trade(base + 500_000, 900),
        trade(base + 500_000, 901),
        trade(base + 500_000, 902, tid=None),
    ]
    sink = make_sink()
    await sink.open()
    await sink.write_batch(batch[:120])  # as if a first attempt got half-way
    await sink.write_batch(batch)
    await sink.write_batch(batch)
    await sink.write_batch(list(reversed(batch)))
    stored = await stream(client, f"{prefix}:trade:cb:BTC-USD")
    await sink.aclose()
    assert len(stored) == len(batch)
    assert sorted(map(trade_identity, stored)) == sorted(
        trade_identity(t) for t in batch if isinstance(t, Trade)
    )
    assert [t.ts for t in stored] == sorted(t.ts for t in stored)


async def test_writes_go_on_after_the_server_forgot_the_scripts(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    """The scripts are checked after opening and after a failure only (not every write): a
    server that lost them meanwhile (SCRIPT FLUSH) answers NOSCRIPT, and the sink loads them
    and writes the batch again."""
    base = now_ns() - MINUTE
    sink = make_sink()
    await sink.open()
    await sink.write_batch([trade(base, 0)])
    await client.script_flush()
    await sink.write_batch([trade(base + 1000, 1)])
    await sink.write_batch([trade(base + 2000, 2)])
    stored = await stream(client, f"{prefix}:trade:cb:BTC-USD")
    await sink.aclose()
    assert [t.trade_id for t in stored] == ["0", "1", "2"]


async def test_late_trades_are_appended_once(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    base = now_ns() - 10 * MINUTE
    live = [trade(base + MINUTE + i, i) for i in range(5)]
    backfilled = [trade(base + i, 100 + i) for i in range(5)]  # older than every live trade
    sink = make_sink()
    await sink.open()
    await sink.write_batch(live)
    await sink.write_batch(backfilled)
    await sink.write_batch(backfilled)
    await sink.write_batch(live + backfilled)
    stored = await stream(client, f"{prefix}:trade:cb:BTC-USD")
    await sink.aclose()
    assert stored == live + backfilled  # stream order: arrival; ts stays in the JSON


async def test_streams_are_trimmed_by_count(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    node = int((await client.config_get("stream-node-max-entries"))["stream-node-max-entries"])
    base = now_ns() - MINUTE
    sink = make_sink(trades_keep=50)
    await sink.open()
    trades = [trade(base + i * 1000, i) for i in range(3000)]
    for i in range(0, len(trades), 500):
        await sink.write_batch(trades[i : i + 500])
    stored = await stream(client, f"{prefix}:trade:cb:BTC-USD")
    await sink.aclose()
    # MAXLEN ~ trims whole stream nodes: at most one node more than asked for is kept.
    assert 50 <= len(stored) <= 50 + node
    assert stored == trades[-len(stored) :]


async def test_trades_and_candles_are_trimmed_by_event_age(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    node = int((await client.config_get("stream-node-max-entries"))["stream-node-max-entries"])
    now = now_ns()
    hour = 3600 * NS_PER_SECOND
    # 1000 trades spread over the last 90..30 minutes, written under a 2h retention.
    old = [trade(now - 90 * MINUTE + i * 3_600_000_000, i) for i in range(1000)]
    wide = make_sink(retention="2h")
    await wide.open()
    await wide.write_batch(old)
    await wide.write_batch([candle(now - now % MINUTE - m * MINUTE) for m in range(100)])
    await wide.aclose()

    # The same keys under a 1h retention: a write trims what is older than now - 1h.
    sink = make_sink(retention="1h")
    await sink.open()
    too_old = trade(now - 2 * hour, 5000)  # never stored: already outside the retention
    await sink.write_batch([trade(now, 4000), too_old, candle(now - now % MINUTE)])
    cutoff = time.time_ns() - hour  # at or after the sink's own cutoff
    stored = await stream(client, f"{prefix}:trade:cb:BTC-USD")
    assert too_old not in stored
    assert len(stored) < len(old)
    assert sum(t.ts < cutoff for t in stored) <= node + 1  # MINID ~ trims whole nodes only
    assert [t for t in stored if t.ts >= cutoff] == [t for t in old if t.ts >= cutoff] + [
        trade(now, 4000)
    ]
    starts = [c.start for c in await zcandles(client, f"{prefix}:candle:cb:BTC-USD:1m")]
    assert starts and min(starts) >= cutoff - MINUTE  # ZSET trimming is exact
    assert all(s >= cutoff // 1_000_000 * 1_000_000 for s in starts)

    # The hourly retention pass trims exactly, also keys that see no more writes.
    removed = await sink.enforce_retention(time.time_ns())
    assert removed > 0
    stored = await stream(client, f"{prefix}:trade:cb:BTC-USD")
    await sink.aclose()
    assert all(t.ts >= time.time_ns() - hour - 60 * NS_PER_SECOND for t in stored)
    assert stored[-1] == trade(now, 4000)


async def test_the_retention_pass_gives_a_ttl_back_to_a_key_that_lost_it(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    sink = make_sink(retention="1h")
    await sink.open()
    await sink.write_batch(every_kind(now_ns()))
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
    for key in keys:
        await client.persist(key)
    await client.set(f"{prefix}:other", "not the sink's", px=60_000)
    await client.persist(f"{prefix}:other")
    assert await sink.enforce_retention(time.time_ns()) == 0
    await sink.aclose()
    for key in keys:
        assert 0 < await client.pttl(key) <= 3600 * 1000, key
    assert await client.pttl(f"{prefix}:other") == -1  # not a key of the sink's: left alone


# ---- candles ----------------------------------------------------------------------------------


async def test_rewriting_a_candle_replaces_it(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    start = now_ns() // MINUTE * MINUTE - 5 * MINUTE
    key = f"{prefix}:candle:cb:BTC-USD:1m"
    sink = make_sink()
    await sink.open()
    forming = msgspec.structs.replace(candle(start, "2"), closed=False)
    await sink.write_batch([forming])
    await sink.write_batch([candle(start, "2.5")])
    await sink.write_batch([candle(start, "2.5")])
    assert await zcandles(client, key) == [candle(start, "2.5")]
    # Several versions of one bucket in one batch: the last one is stored.
    await sink.write_batch([candle(start, "3"), candle(start + MINUTE, "1"), candle(start, "4")])
    assert await zcandles(client, key) == [candle(start, "4"), candle(start + MINUTE, "1")]
    await sink.aclose()


async def test_a_built_candle_never_replaces_a_stream_or_backfill_one(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    start = now_ns() // MINUTE * MINUTE - 10 * MINUTE
    key = f"{prefix}:candle:cb:BTC-USD:1m"
    sink = make_sink()
    await sink.open()
    await sink.write_batch([candle(start, "7", "backfill"), candle(start + MINUTE, "1")])
    await sink.write_batch([candle(start, "8", "built")])  # later batch: kept out
    # Same batch, built after stream: the stream one wins; built first then backfill: backfill.
    await sink.write_batch(
        [
            candle(start + 2 * MINUTE, "5", "stream"),
            candle(start + 2 * MINUTE, "6", "built"),
            candle(start + MINUTE, "9", "backfill"),
        ]
    )
    await sink.write_batch([candle(start, "7.5", "backfill")])  # the provider revised its own
    assert await zcandles(client, key) == [
        candle(start, "7.5", "backfill"),
        candle(start + MINUTE, "9", "backfill"),
        candle(start + 2 * MINUTE, "5", "stream"),
    ]
    await sink.aclose()


async def test_a_built_candle_with_fewer_trades_keeps_the_stored_one(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    # A builder restarted mid-bucket (or shown a replayed trade) knows part of the bucket only.
    start = now_ns() // MINUTE * MINUTE - 10 * MINUTE
    key = f"{prefix}:candle:cb:BTC-USD:1m"
    sink = make_sink()
    await sink.open()
    await sink.write_batch([candle(start, "5", trades=7)])
    await sink.write_batch([candle(start, "6", trades=1)])  # later batch: kept out
    # Same batch: the fuller one stays, whatever the order.
    await sink.write_batch(
        [candle(start + MINUTE, "5", trades=7), candle(start + MINUTE, "6", trades=1)]
    )
    await sink.write_batch([candle(start + 2 * MINUTE, "6", trades=None)])
    await sink.write_batch([candle(start + 2 * MINUTE, "4", trades=3)])  # no count to beat
    assert await zcandles(client, key) == [
        candle(start, "5", trades=7),
        candle(start + MINUTE, "5", trades=7),
        candle(start + 2 * MINUTE, "4", trades=3),
    ]
    await sink.write_batch([candle(start, "7", trades=8)])  # a correction adds trades
    assert (await zcandles(client, key))[0] == candle(start, "7", trades=8)
    await sink.aclose()


async def test_candles_are_kept_per_interval_up_to_candles_keep(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    start = now_ns() // MINUTE * MINUTE - 30 * MINUTE
    sink = make_sink(candles_keep=5)
    await sink.open()
    await sink.write_batch(
        [candle(start + m * MINUTE, str(m)) for m in range(20)]
        + [candle(start, "1", interval="5m")]
    )
    await sink.aclose()
    kept = await zcandles(client, f"{prefix}:candle:cb:BTC-USD:1m")
    assert [c.start for c in kept] == [start + m * MINUTE for m in range(15, 20)]
    assert len(await zcandles(client, f"{prefix}:candle:cb:BTC-USD:5m")) == 1


# ---- books and gaps ---------------------------------------------------------------------------


async def test_book_hash_holds_the_top_levels_after_deltas(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    base = now_ns()
    snap = BookSnapshot(
        "cb",
        "ETH-USD",
        base,
        base,
        [(D(100 - i), D(1)) for i in range(20)],
        [(D(101 + i), D(1)) for i in range(20)],
        1,
    )
    delta = BookDelta(
        "cb", "ETH-USD", base + 1, base + 1, [("bid", D(100), D(0)), ("ask", D("100.5"), D(3))], 2
    )
    orphan = BookDelta("cb", "SOL-USD", base, base, [("bid", D(1), D(1))], 1)
    sink = make_sink(book_depth=3)
    await sink.open()
    await sink.write_batch([snap, orphan])
    await sink.write_batch([delta])
    await sink.write_batch([delta])  # a retried delta changes nothing (absolute sizes)
    book = await client.hgetall(f"{prefix}:book:cb:ETH-USD")
    await sink.aclose()
    assert msgspec.json.decode(book[b"bids"]) == [["99", "1"], ["98", "1"], ["97", "1"]]
    assert msgspec.json.decode(book[b"asks"]) == [["100.5", "3"], ["101", "1"], ["102", "1"]]
    assert book[b"sequence"] == b"2" and book[b"ts"] == str(base + 1).encode()
    assert not await client.exists(f"{prefix}:book:cb:SOL-USD")  # no snapshot yet


async def test_gaps_are_upserted_per_kind_and_start(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    base = now_ns() - MINUTE
    gap = Gap("cb", "BTC-USD", "candles:1m", base, base + MINUTE, "candle")
    sink = make_sink(retention="1h")
    await sink.open()
    await sink.write_batch([gap, Gap("cb", "BTC-USD", "trades", base, base + 1, "sequence")])
    filled = msgspec.structs.replace(gap, status="filled")
    stale = Gap("cb", "BTC-USD", "trades", base - 7200 * NS_PER_SECOND, base, "disconnect")
    await sink.write_batch([filled, stale])
    stored = await client.hgetall(f"{prefix}:gap:cb:BTC-USD")
    await sink.aclose()
    assert {k.decode() for k in stored} == {f"candles:1m:{base}", f"trades:{base}"}
    assert from_json(stored[f"candles:1m:{base}".encode()]) == filled


async def test_a_failed_gap_is_stored_with_its_reason(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    base = now_ns() - MINUTE
    gap = Gap("cb", "BTC-USD", "trades", base, base + MINUTE, "disconnect")
    failed = msgspec.structs.replace(gap, status="failed", detail="HTTP 403: not on this plan")
    sink = make_sink(retention="1h")
    await sink.open()
    await sink.write_batch([gap])
    await sink.write_batch([failed])
    stored = await client.hget(f"{prefix}:gap:cb:BTC-USD", f"trades:{base}")
    await sink.aclose()
    assert stored is not None and from_json(stored) == failed
    assert b'"detail":"HTTP 403: not on this plan"' in stored


# ---- pub/sub ----------------------------------------------------------------------------------


async def receive(ps: aioredis.client.PubSub, n: int) -> list[Event]:
    got: list[Event] = []
    with anyio.fail_after(5):
        while len(got) < n:
            msg = await ps.get_message(ignore_subscribe_messages=True, timeout=1)
            if msg is not None:
                data = msg["data"]
                got.append(
                    from_json(data) if b'"BookTop"' not in data else msgspec.json.decode(data)
                )
    return got


async def test_every_write_is_published_on_its_channel(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    base = now_ns()
    events = [*every_kind(base), trade(base + 1, 2)]
    async with client.pubsub() as ps:
        await ps.psubscribe(f"{prefix}:*")
        await ps.get_message(timeout=1)
        sink = make_sink()
        await sink.open()
        await sink.write_batch(events)
        await sink.aclose()
        got = await receive_with_channels(ps, 6)
    by_channel: dict[str, list[object]] = {}
    for channel, data in got:
        by_channel.setdefault(channel, []).append(data)
    assert by_channel[f"{prefix}:trade:cb:BTC-USD"] == [events[0], events[5]]
    assert by_channel[f"{prefix}:quote:cb:BTC-USD"] == [events[1]]
    assert by_channel[f"{prefix}:candle:cb:BTC-USD:1m"] == [events[2]]
    assert by_channel[f"{prefix}:gap:cb:BTC-USD"] == [events[4]]
    [top] = by_channel[f"{prefix}:book:cb:BTC-USD"]
    assert isinstance(top, dict) and top["type"] == "BookTop" and top["bids"] == [["100", "1"]]


async def test_a_retried_batch_republishes_no_trade_or_candle(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    base = now_ns()
    events = [trade(base, 1), candle(base - base % MINUTE)]
    sink = make_sink()
    await sink.open()
    await sink.write_batch(events)
    async with client.pubsub() as ps:
        await ps.psubscribe(f"{prefix}:*")
        await ps.get_message(timeout=1)
        await sink.write_batch(events)  # the retry: stored already, so nothing is published
        await sink.write_batch([trade(base + 1, 2)])
        got = await receive_with_channels(ps, 1)
        assert await ps.get_message(ignore_subscribe_messages=True, timeout=0.3) is None
    await sink.aclose()
    assert got == [(f"{prefix}:trade:cb:BTC-USD", trade(base + 1, 2))]


async def receive_with_channels(ps: aioredis.client.PubSub, n: int) -> list[tuple[str, object]]:
    got: list[tuple[str, object]] = []
    with anyio.fail_after(5):
        while len(got) < n:
            msg = await ps.get_message(ignore_subscribe_messages=True, timeout=1)
            if msg is None:
                continue
            data = msg["data"]
            decoded = msgspec.json.decode(data) if b'"BookTop"' in data else from_json(data)
            got.append((msg["channel"].decode(), decoded))
    return got


async def test_publish_false_publishes_nothing(
    client: aioredis.Redis, prefix: str, make_sink: MakeSink
) -> None:
    async with client.pubsub() as ps:
        await ps.psubscribe(f"{prefix}:*")
        await ps.get_message(timeout=1)
        sink = make_sink(publish=False)
        await sink.open()
        await sink.write_batch(every_kind(now_ns()))
        await sink.aclose()
        assert await ps.get_message(ignore_subscribe_messages=True, timeout=0.5) is None
    assert await client.exists(f"{prefix}:quote:cb:BTC-USD")
