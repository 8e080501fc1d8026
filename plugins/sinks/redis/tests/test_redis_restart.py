"""Redis stops and starts mid-stream: the runner's buffer and retries lose nothing.

This test stops the shared Redis server (holding the machine-wide restart lock, as
shared/SERVICES.md asks) and always starts it again. Redis here keeps nothing on disk, so what
was written before the outage is gone afterwards; the test asserts that every event handed to
the runner *during and after* the outage is stored once Redis is back, exactly once.
"""

from __future__ import annotations

import fcntl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import anyio
import pytest
import redis.asyncio as aioredis

from tickwire._runner.sink import RunningSink
from tickwire.events import NS_PER_SECOND, Candle, Event, Quote, Trade, from_json
from tickwire.metrics import Metrics
from tickwire_redis import RedisSettings, RedisSink

pytestmark = [pytest.mark.anyio, pytest.mark.service]

LOCK = "/tmp/tickwire-service-restart.lock"
START = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]


def _ping() -> bool:
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"],
        capture_output=True,
        text=True,
        timeout=5,
        check=False,
    )
    return done.stdout.strip() == "PONG"


def _wait(up: bool, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while _ping() != up:
        if time.monotonic() > deadline:
            raise AssertionError(f"redis did not {'start' if up else 'stop'} in {seconds}s")
        time.sleep(0.05)


def stop_redis() -> None:
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    _wait(up=False)


def start_redis() -> None:
    if not _ping():
        subprocess.run(START, check=True, timeout=20)
    _wait(up=True)


@contextmanager
def restart_lock() -> Iterator[None]:
    with open(LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            start_redis()  # whatever happened, leave the shared server running
            fcntl.flock(fh, fcntl.LOCK_UN)


def batch(n: int, first: int, base: int) -> list[Event]:
    events: list[Event] = []
    for i in range(first, first + n):
        ts = base + i * 1_000_000
        events.append(
            Trade("cb", "BTC-USD", ts, ts, Decimal("100") + i, Decimal(1), "buy", f"t{i}")
        )
        events.append(
            Quote("cb", "BTC-USD", ts, ts, Decimal(i), Decimal(1), Decimal(i + 1), Decimal(1))
        )
    start = base - base % (60 * NS_PER_SECOND)
    events.append(
        Candle(
            "cb",
            "BTC-USD",
            "1m",
            start,
            Decimal(1),
            Decimal(2),
            Decimal(1),
            Decimal(first),
            source="built",
            closed=False,
        )
    )
    return events


async def test_nothing_handed_to_the_runner_is_lost_across_a_redis_restart(
    client: aioredis.Redis, prefix: str
) -> None:
    settings = RedisSettings(prefix=prefix, batch_size=50, flush_interval="10ms", socket_timeout=2)
    metrics = Metrics()
    running = RunningSink(settings, RedisSink(settings), metrics)
    base = time.time_ns() - 60 * NS_PER_SECOND
    with restart_lock():
        async with anyio.create_task_group() as tg:
            await tg.start(running.run)
            assert running.offer(batch(40, 0, base))
            with anyio.fail_after(10):
                while running.written < 81:
                    await anyio.sleep(0.01)

            await anyio.to_thread.run_sync(stop_redis)
            during = [batch(40, n, base) for n in range(40, 400, 40)]
            for events in during[:4]:
                assert running.offer(events)
                await anyio.sleep(0.1)  # writes fail and are retried while Redis is down
            await anyio.to_thread.run_sync(start_redis)
            for events in during[4:]:
                assert running.offer(events)
            running.close()
        # The task group ends when the runner has drained its buffer into the restarted Redis.
    assert metrics.value("sink_errors_total", sink="redis") > 0, "no write ever failed"
    await client.connection_pool.disconnect()  # the test's own connection died with the server

    expected = [e for events in during for e in events if isinstance(e, Trade)]
    stored = [from_json(f[b"json"]) for _, f in await client.xrange(f"{prefix}:trade:cb:BTC-USD")]
    assert stored == expected
    quote = await client.hgetall(f"{prefix}:quote:cb:BTC-USD")
    assert quote[b"bid"] == b"399"
    candles = await client.zrange(f"{prefix}:candle:cb:BTC-USD:1m", 0, -1)
    assert [from_json(c) for c in candles] == [during[-1][-1]]
    for key in [k async for k in client.scan_iter(match=f"{prefix}:*")]:
        assert await client.pttl(key) > 0
