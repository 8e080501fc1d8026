"""Throughput of the NATS JetStream bus (tickwire-nats) against bare nats-py, in one run.

    uv run --all-packages python bench/nats_bus.py [--events 100000] [--url nats://127.0.0.1:4222]

Figures, each printed next to its reference:

1. floor: bare nats-py ``publish_async`` of pre-encoded payloads with a ``Nats-Msg-Id``, acks
   awaited per 1,000 (shared/protocols/storage-and-bus.md §2.3 measured 34-38k msgs/s);
2. collector: :class:`tickwire_nats.NatsSink` ``write_batch`` of 5,000 trades at a time (subject
   encoding, message id hash, msgpack encoding, async acks): events/s one collector publishes;
3. writers: ``nats`` source → ``null`` sink through the real runner with ack-after-commit, 1 and
   2 writer processes sharing one durable consumer (§2.3: pull ``fetch(1000)`` + ack each,
   28-43k msgs/s).

Each phase uses its own stream (``TWBENCH_<hex>``), deleted at the end. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal

import nats
from nats.js.api import StreamConfig

from tickwire.events import Trade
from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire_nats import NatsSink, NatsSinkSettings, attach
from tickwire_nats.schema import encode, message_id, subject_for

T0 = (time.time_ns() // 3_600_000_000_000 - 1) * 3_600_000_000_000


def trades(n: int) -> list[Trade]:
    symbols = [f"SYM{i}-USD" for i in range(200)]
    return [
        Trade(
            "bench",
            symbols[i % len(symbols)],
            T0 + i * 1000,
            T0 + i * 1000 + 5,
            Decimal("100.25") + Decimal(i % 1000) / 100,
            Decimal("0.00100000"),
            "buy" if i % 2 else "sell",
            str(i),
        )
        for i in range(n)
    ]


def cpu() -> float:
    return time.process_time()


async def floor(url: str, events: list[Trade]) -> float:
    nc = await nats.connect(url)
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:10]
    stream, prefix = f"TWBENCH_{tag}", f"twbench_{tag}"
    await js.add_stream(StreamConfig(name=stream, subjects=[f"{prefix}.>"], duplicate_window=120))
    prepared = [(subject_for(prefix, e), encode(e), message_id(e)) for e in events]
    try:
        started = time.perf_counter()
        pending = []
        for subject, payload, msg_id in prepared:
            pending.append(
                await js.publish_async(subject, payload, headers={"Nats-Msg-Id": msg_id})
            )
            if len(pending) == 1000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
        elapsed = time.perf_counter() - started
    finally:
        await js.delete_stream(stream)
        await nc.close()
    return len(events) / elapsed


async def collector(url: str, events: list[Trade]) -> tuple[float, float, str, str]:
    tag = uuid.uuid4().hex[:10]
    stream, prefix = f"TWBENCH_{tag}", f"twbench_{tag}"
    sink = NatsSink(NatsSinkSettings(type="nats", url=url, stream=stream, subject_prefix=prefix))
    await sink.open()
    try:
        started, c0 = time.perf_counter(), cpu()
        for i in range(0, len(events), 5000):
            await sink.write_batch(events[i : i + 5000])
        elapsed, used = time.perf_counter() - started, cpu() - c0
    finally:
        await sink.aclose()
    assert sink.stored == len(events), sink.stored
    return len(events) / elapsed, used / elapsed, stream, prefix


def _spawn(args: str, n: int) -> list[subprocess.Popen[str]]:
    """``n`` writer processes of this script, waiting for "go" on stdin."""
    return [
        subprocess.Popen(
            [sys.executable, __file__, "--writer", args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]


async def writers(url: str, stream: str, prefix: str, count: int, n: int) -> float:
    """Start ``n`` writer processes on a fresh durable consumer; time until all are drained."""
    durable = f"bench-{uuid.uuid4().hex[:8]}"
    args = json.dumps({"url": url, "stream": stream, "subject_prefix": prefix, "durable": durable})
    procs = _spawn(args, n)
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    nc = await nats.connect(url)
    js = nc.jetstream()
    started = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    try:
        while True:
            await asyncio.sleep(0.02)
            try:
                info = await js.consumer_info(stream, durable)
            except nats.js.errors.NotFoundError:
                continue
            if info.ack_floor.stream_seq >= count:
                break
        elapsed = time.perf_counter() - started
    finally:
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in procs:
            p.wait(timeout=30)
            if p.stdout is not None:
                p.stdout.close()
        await js.delete_consumer(stream, durable)
        await nc.close()
    return count / elapsed


async def writer_process(keys: dict[str, str]) -> None:
    settings = Settings(
        sources=[{"provider": "nats", "batch": 1000, **keys}],
        sinks=[{"type": "null"}],
        candles={"intervals": []},
        bootstrap={"days": 0},
        runner={"deadletter": tempfile.mkdtemp()},
    )
    pipeline = Pipeline(settings)
    attach(pipeline)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "go"
    async with pipeline:
        await asyncio.to_thread(sys.stdin.readline)  # EOF: stop


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--writer")
    args = parser.parse_args()
    if args.writer:
        await writer_process(json.loads(args.writer))
        return
    assert "127.0.0.1" in args.url or "[::1]" in args.url, "benchmarks use loopback only"
    events = trades(args.events)
    load = os.getloadavg()[0]
    print(
        f"events: {len(events):,} trades over 200 symbols, one message per event; "
        f"load average {load:.2f} on {os.cpu_count()} CPUs (above ~1: contended)"
    )
    rate = await floor(args.url, events)
    print(
        f"floor   bare nats-py publish_async + Msg-Id, acks per 1000: {rate:>9,.0f} msgs/s"
        "   (ref §2.3: 34,127-38,312)"
    )
    rate, core, stream, prefix = await collector(args.url, events)
    print(
        f"sink    NatsSink.write_batch(5000) (encode+id+publish+acks): {rate:>9,.0f} events/s"
        f"   client CPU {core:.0%} of a core"
    )
    nc = await nats.connect(args.url)
    try:
        for n in (1, 2):
            rate = await writers(args.url, stream, prefix, len(events), n)
            print(
                f"writer  {n} writer process(es), nats -> null sink, ack after commit: "
                f"{rate:>9,.0f} events/s   (ref §2.3 pull+ack each: 28,495-42,642)"
            )
    finally:
        await nc.jetstream().delete_stream(stream)
        await nc.close()


if __name__ == "__main__":
    asyncio.run(main())
