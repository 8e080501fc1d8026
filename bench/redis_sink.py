"""Events/s written by the tickwire Redis sink, next to a bare redis-py pipeline floor.

Same data, same machine, same run, against the real Redis on 127.0.0.1:6379::

    uv run --all-packages python bench/redis_sink.py [--events 200000] [--symbols 100]

Workloads (each written in batches of ``--batch`` events, the runner's default 5000):

* ``trades``: trades only, time-ordered over ``--symbols`` symbols;
* ``mixed``: one quote per trade (half the events are quotes).

Floor: one ``pipeline(transaction=False)`` per batch with, per event, ``XADD <key> MAXLEN ~ N *
json <to_json>`` (trades) or ``HSET <key> mapping`` (quotes) -- what a hand-written writer with
no idempotency, TTLs, trimming by age, coalescing or pub/sub would send. The sink is measured
with ``publish = true`` (its default: every trade is also PUBLISHed, from its Lua script) and
``publish = false``. The writers run interleaved for ``--repeat`` rounds and the best round of
each is printed: wall-clock events/s, and microseconds of CPU per event in this process and in
redis-server (the sink moves work from the Python client into the server's scripts, so both
sides are shown). Every key is under a fresh prefix and deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal

import redis.asyncio as aioredis

from tickwire.events import Event, Quote, Trade, to_json
from tickwire_redis import RedisSettings, RedisSink

URL = "redis://127.0.0.1:6379/0"


def make_events(n: int, symbols: int, quotes: bool) -> list[Event]:
    now = time.time_ns() - 600 * 1_000_000_000
    events: list[Event] = []
    i = 0
    while len(events) < n:
        ts = now + i * 10_000
        sym = f"SYM{i % symbols:04d}-USD"
        price = Decimal("100.25") + Decimal(i % 500) / 100
        events.append(
            Trade(
                "bench",
                sym,
                ts,
                ts + 1000,
                price,
                Decimal("0.125"),
                "buy" if i % 2 else "sell",
                str(i),
            )
        )
        if quotes and len(events) < n:
            events.append(
                Quote(
                    "bench",
                    sym,
                    ts,
                    ts + 1000,
                    price,
                    Decimal(3),
                    price + Decimal("0.01"),
                    Decimal(4),
                )
            )
        i += 1
    return events


def server_cpu(pid: int) -> float:
    """CPU seconds used so far by the redis-server process (utime + stime)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batches(events: Sequence[Event], size: int) -> list[Sequence[Event]]:
    return [events[i : i + size] for i in range(0, len(events), size)]


async def run_floor(
    client: aioredis.Redis, prefix: str, events: Sequence[Event], size: int, keep: int
) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches(events, size):
        pipe = client.pipeline(transaction=False)
        for e in batch:
            if isinstance(e, Trade):
                pipe.xadd(
                    f"{prefix}:trade:{e.provider}:{e.symbol}",
                    {"json": to_json(e)},
                    maxlen=keep,
                    approximate=True,
                )
            elif isinstance(e, Quote):
                pipe.hset(
                    f"{prefix}:quote:{e.provider}:{e.symbol}",
                    mapping={
                        "ts": e.ts,
                        "received_ts": e.received_ts,
                        "bid": str(e.bid),
                        "bid_size": str(e.bid_size),
                        "ask": str(e.ask),
                        "ask_size": str(e.ask_size),
                    },
                )
        await pipe.execute()
    return time.perf_counter() - started, time.process_time() - cpu


async def run_sink(
    prefix: str, events: Sequence[Event], size: int, keep: int, publish: bool
) -> tuple[float, float]:
    sink = RedisSink(RedisSettings(url=URL, prefix=prefix, trades_keep=keep, publish=publish))
    await sink.open()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for batch in batches(events, size):
            await sink.write_batch(batch)
        return time.perf_counter() - started, time.process_time() - cpu
    finally:
        await sink.aclose()


async def clean(client: aioredis.Redis, prefix: str) -> None:
    keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 1000):
        await client.delete(*keys[i : i + 1000])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--keep", type=int, default=100_000, help="MAXLEN per stream")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; best kept")
    args = parser.parse_args()

    client = aioredis.Redis.from_url(URL)
    await client.ping()
    pid = int((await client.info("server"))["process_id"])
    run = uuid.uuid4().hex[:8]
    print(
        f"redis-py {__import__('redis').__version__}, {args.events} events, "
        f"{args.symbols} symbols, batches of {args.batch}, best of {args.repeat} "
        "interleaved rounds (wall; client and redis-server CPU per event)"
    )
    print(
        f"{'workload':<8} {'writer':<32} {'events/s':>10} {'client us/ev':>12} {'server us/ev':>12}"
    )
    writers = (
        "bare redis-py pipeline (floor)",
        "tickwire-redis publish=true",
        "tickwire-redis publish=false",
    )
    try:
        for workload in ("trades", "mixed"):
            events = make_events(args.events, args.symbols, quotes=workload == "mixed")
            best: dict[str, tuple[float, float, float]] = {}
            for r in range(args.repeat):
                for name in writers:
                    p = f"twbench-{run}-{workload}-{r}-{writers.index(name)}"
                    before = server_cpu(pid)
                    if name.startswith("bare"):
                        wall, cpu = await run_floor(client, p, events, args.batch, args.keep)
                    else:
                        wall, cpu = await run_sink(
                            p, events, args.batch, args.keep, publish=name.endswith("true")
                        )
                    server = server_cpu(pid) - before
                    await clean(client, p)
                    old = best.get(name, (float("inf"),) * 3)
                    best[name] = (min(old[0], wall), min(old[1], cpu), min(old[2], server))
            n = len(events)
            for name in writers:
                wall, cpu, server = best[name]
                print(
                    f"{workload:<8} {name:<32} {n / wall:>10,.0f} {cpu / n * 1e6:>12.1f} "
                    f"{server / n * 1e6:>12.1f}"
                )
    finally:
        await client.aclose()


if __name__ == "__main__":
    asyncio.run(main())
