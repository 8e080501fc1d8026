"""Real Redis and PostgreSQL stop and start under a running pipeline.

Each test holds the machine-wide ``/tmp/tickwire-service-restart.lock`` for the whole stop/start
and always starts the service again. The stopped sink spills to disk while SQLite (the other
sink) keeps up; once the service is back the sink holds exactly what the feed delivered.
"""

from __future__ import annotations

import logging
import sys
import uuid
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from harness import (
    FaultFeed,
    assert_exact,
    feed_source,
    pg_up,
    pipeline,
    redis_up,
    restart_lock,
    service_missing,
    sqlite_sink,
    start_pg,
    start_redis,
    stop_pg,
    stop_redis,
    stored,
    until,
)

from tickwire.events import Trade, from_json

pytestmark = [pytest.mark.anyio, pytest.mark.service]
DSN = "postgresql://postgres@127.0.0.1:5432/test"


def _rows(messages: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return sorted(
        ((m["s"], str(m["id"]), m["p"], m["q"], m["side"]) for m in messages),
        key=lambda r: (r[0], int(str(r[1]))),
    )


async def test_redis_down_mid_stream_spills_then_stores_exactly_what_was_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio as aioredis

    import tickwire_redis

    if not redis_up():
        service_missing("Redis")
    caplog.set_level(logging.INFO, logger="tickwire")
    prefix = f"twfault{uuid.uuid4().hex[:10]}"
    db = tmp_path / "a.db"
    feed = FaultFeed()
    client = aioredis.Redis(host="127.0.0.1", port=6379)
    try:
        async with feed.running():
            p = pipeline(
                tmp_path,
                [feed_source(feed, ["AAA", "BBB"])],
                [
                    sqlite_sink(db, name="a"),
                    {
                        "type": "redis",
                        "name": "redis",
                        "prefix": prefix,
                        "buffer": 20,
                        "batch_size": 10,
                        "flush_interval": "20ms",
                        "socket_timeout": "1s",
                        "publish": False,
                    },
                ],
                plugins=(tickwire_redis,),
            )
            rs = p.running_sinks[1]
            rs.spill_to(tmp_path / "spill", fsync_interval=0.05)

            async def in_redis() -> list[tuple[object, ...]]:
                out = []
                for symbol in ("AAA", "BBB"):
                    for _, fields in await client.xrange(f"{prefix}:trade:jsonfeed:{symbol}"):
                        t = from_json(fields[b"json"])
                        assert isinstance(t, Trade)
                        out.append((t.symbol, t.trade_id, str(t.price), str(t.size), t.side))
                return sorted(out, key=lambda r: (r[0], int(str(r[1]))))

            async with p:
                await feed.wait_clients()
                await until(lambda: rs.writable)
                with restart_lock(start_redis):
                    await anyio.to_thread.run_sync(stop_redis)
                    for _ in range(100):
                        await feed.trade("AAA")
                        await feed.trade("BBB")
                    await until(lambda: len(stored(db)) == 200, what="sqlite keeps up")
                    await until(lambda: rs.spilled > 0, what="redis sink spills")
                    assert p.metrics.value("sink_backpressure_total") == 0
                    await anyio.to_thread.run_sync(start_redis)
                with anyio.fail_after(30):
                    while len(await in_redis()) < 200:
                        await anyio.sleep(0.1)
                got = await in_redis()
    finally:
        keys = [k async for k in client.scan_iter(f"{prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()
    assert_exact(db, feed)
    assert got == _rows(feed.delivered)
    assert "sink.spill_replayed" in caplog.text


async def test_postgresql_restart_mid_stream_stores_every_trade_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncpg

    import tickwire_timescale

    if not Path("/etc/postgresql").is_dir() or not pg_up():
        service_missing("PostgreSQL (pg_ctlcluster)")
    caplog.set_level(logging.INFO, logger="tickwire")
    schema = f"tw_fault_{uuid.uuid4().hex[:10]}"
    db = tmp_path / "a.db"
    feed = FaultFeed()
    try:
        async with feed.running():
            p = pipeline(
                tmp_path,
                [feed_source(feed, ["AAA", "BBB"])],
                [
                    sqlite_sink(db, name="a"),
                    {
                        "type": "timescale",
                        "name": "pg",
                        "dsn": DSN,
                        "schema": schema,
                        "retention": None,
                        "buffer": 20,
                        "batch_size": 10,
                        "flush_interval": "20ms",
                        "connect_timeout": "2s",
                    },
                ],
                plugins=(tickwire_timescale,),
            )
            rs = p.running_sinks[1]
            rs.spill_to(tmp_path / "spill", fsync_interval=0.05)
            async with p:
                await feed.wait_clients()
                await until(lambda: rs.writable, timeout=30)
                for _ in range(25):
                    await feed.trade("AAA")
                    await feed.trade("BBB")
                await until(lambda: rs.written >= 50, what="pg writes before the stop")
                with restart_lock(start_pg):
                    await anyio.to_thread.run_sync(stop_pg)
                    for _ in range(75):
                        await feed.trade("AAA")
                        await feed.trade("BBB")
                    await until(lambda: len(stored(db)) == 200, what="sqlite keeps up")
                    await until(lambda: rs.spilled > 0, what="the pg sink spills")
                    await anyio.to_thread.run_sync(start_pg)
                for _ in range(25):
                    await feed.trade("AAA")
                    await feed.trade("BBB")
                await until(lambda: rs.written >= 250 and not rs.spilled, timeout=60)
        conn = await asyncpg.connect(DSN)
        try:
            rows = await conn.fetch(
                f"SELECT symbol, trade_id, price::text, size::text, side FROM {schema}.trades"
            )
        finally:
            await conn.close()
    finally:
        if pg_up():
            conn = await asyncpg.connect(DSN)
            try:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            finally:
                await conn.close()
    got = sorted((tuple(r) for r in rows), key=lambda r: (r[0], int(r[1])))
    assert_exact(db, feed)
    assert got == _rows(feed.delivered)
    assert "sink.retry" in caplog.text
