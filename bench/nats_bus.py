"""Throughput of the NATS JetStream bus (tickwire-nats) against bare nats-py, in one run.

    uv run --all-packages python bench/nats_bus.py [--events 100000] [--url nats://127.0.0.1:4222]
        [--collector-events 50000] [--products 100]

Figures, each printed next to its reference:

1. floor: bare nats-py ``publish_async`` of pre-encoded payloads with a ``Nats-Msg-Id``, acks
   awaited per 1,000 (shared/protocols/storage-and-bus.md §2.3 measured 34-38k msgs/s);
2. collector: :class:`tickwire_nats.NatsSink` ``write_batch`` of 5,000 trades at a time (subject
   encoding, message id hash, msgpack encoding, async acks): events/s one collector publishes;
3. writers: ``nats`` source → ``null`` sink through the real runner with ack-after-commit, 1 and
   2 writer processes sharing one durable consumer (§2.3: pull ``fetch(1000)`` + ack each,
   28-43k msgs/s).
4. a whole collector process: the fake Coinbase feed (``bench/_feed.py``, its own process,
   ``match`` frames written as a burst over ``--products`` products) → the coinbase source (one
   connection per 50 products, normalizer, gap detector, 1m candles) → ``NatsSink``; next to
   the same collector with the ``null`` sink in the same run. Trades/s from the first trade
   received to the last one the sink wrote, and the collector process's CPU: what one
   collector process carries, whatever the symbols' mix.

Every figure is printed with its ratio to the bare nats-py floor measured in the same run: the
absolute numbers move with the machine's load, the ratios much less. Each phase uses its own
stream (``TWBENCH_<hex>``), deleted at the end. Only 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import nats
from nats.js.api import StreamConfig

from tickwire.events import Event, Trade
from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire_nats import NatsSink, NatsSinkSettings, attach
from tickwire_nats.schema import encode, message_id, subject_for

#: Event time of the first trade: now (an older time only earns clock.skew warnings).
T0 = (time.time_ns() // 3_600_000_000_000 - 1) * 3_600_000_000_000
FEED = Path(__file__).with_name("_feed.py")


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
    """Start ``n`` writer processes on a fresh durable consumer; time until all are drained.

    Progress is watched by a core subscription to the consumer's ack subjects
    (``$JS.ACK.<stream>.<durable>.>``), never by polling ``consumer_info``: on nats-server 2.9.10
    one ``CONSUMER.INFO`` request leaves a pull consumer delivering a few hundred messages per
    second from then on (see tickwire_nats.connect), which is what this phase measured before.
    The consumer is created here first, as a first writer would, so that writers starting at the
    same instant do not race to create it. The ack floor is checked once, after the clock stops.
    """
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from tickwire_nats import NatsSourceSettings
    from tickwire_nats.connect import consumer_name

    durable = f"bench-{uuid.uuid4().hex[:8]}"
    keys = {"url": url, "stream": stream, "subject_prefix": prefix, "durable": durable}
    source = NatsSourceSettings(provider="nats", **keys)
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_consumer(
        stream,
        ConsumerConfig(
            durable_name=consumer_name(source, ">"),
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=source.ack_wait.total_seconds(),
            max_ack_pending=source.max_ack_pending,
            max_deliver=source.max_deliver,
            filter_subject=f"{prefix}.>",
            max_waiting=512,
        ),
    )
    acked: set[bytes] = set()
    drained = asyncio.Event()

    async def on_ack(msg: Any) -> None:
        # $JS.ACK.<stream>.<durable>.<delivered>.<stream seq>.<consumer seq>.<ts>.<pending>
        if msg.data in (b"", b"+ACK"):
            acked.add(msg.subject.split(".")[5])
            if len(acked) >= count:
                drained.set()

    ack_sub = await nc.subscribe(f"$JS.ACK.{stream}.{durable}.>", cb=on_ack)
    await nc.flush()
    procs = _spawn(json.dumps(keys), n)
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    try:
        await asyncio.wait_for(drained.wait(), timeout=600)
        elapsed = time.perf_counter() - started
        await ack_sub.unsubscribe()
        info = await js.consumer_info(stream, durable)
        assert info.ack_floor.stream_seq >= count, info.ack_floor
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
    logging.getLogger("tickwire").setLevel(logging.ERROR)
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


# ---- a whole collector: fake Coinbase feed -> coinbase source -> sink ---------------------


class CountingSink:
    """Wraps a sink; counts fresh trades written until the ``n``-th.

    The window opens when the collector *received* the first fresh trade (its ``received_ts``,
    wall clock) and closes when the ``n``-th was written. Opening it at the first ``write_batch``
    instead gave an empty window when all ``n`` trades came in one batch (``--collector-events``
    up to the sink's ``batch_size``): rates of hundreds of millions per second.
    """

    def __init__(self, inner: Any, n: int, since: int) -> None:
        self.inner, self.n, self.since = inner, n, since
        self.trades = 0
        self.t0 = self.c0 = self.t1 = self.c1 = self.w0 = 0.0
        self.done = asyncio.Event()

    async def open(self) -> None:
        await self.inner.open()

    async def write_batch(self, events: Sequence[Event]) -> None:
        await self.inner.write_batch(events)
        since = self.since
        fresh = [e.received_ts for e in events if type(e) is Trade and e.ts >= since]
        if fresh and not self.trades:
            self.t0 = min(fresh) / 1e9
        self.trades += len(fresh)
        if self.trades >= self.n and not self.done.is_set():
            self.t1, self.c1 = time.time_ns() / 1e9, cpu()
            self.done.set()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def collector_process(spec: dict[str, Any]) -> None:
    """The child: one collector pipeline; prints ``UP <connections>``, then ``RESULT {...}``."""
    import tickwire_coinbase
    from tickwire.builtin.sinks import NullSink

    logging.getLogger("tickwire").setLevel(logging.ERROR)
    products = Path(spec["products_file"]).read_text().split()  # noqa: ASYNC240 - start-up
    settings = Settings(
        sources=[
            {
                "provider": "coinbase",
                "symbols": products,
                "channels": ["trades"],
                "ws_url": spec["ws"],
                "rest_url": spec["rest"],
            }
        ],
        sinks=[],
        bootstrap={"days": 0},
        runner={"deadletter": tempfile.mkdtemp()},
    )
    if spec["sink"] == "nats":
        inner: Any = NatsSink(NatsSinkSettings(type="nats", **spec["keys"]))
    else:
        inner = NullSink()
    sink = CountingSink(inner, spec["n"], time.time_ns() // 1000 * 1000)
    pipeline = Pipeline(settings, plugins=(tickwire_coinbase,), entry_points=False, sinks=[sink])
    async with pipeline:
        # CPU from here: the collector is idle until the feed gets GO.
        sink.c0, sink.w0 = cpu(), time.time_ns() / 1e9
        print(f"UP {len(pipeline.connections)}", flush=True)
        await asyncio.wait_for(sink.done.wait(), timeout=600)
        pipeline.stop()
    result = {
        "trades": sink.trades,
        "elapsed": sink.t1 - sink.t0,
        # CPU share from UP (idle until the feed starts) to the n-th trade written.
        "cpu_share": (sink.c1 - sink.c0) / (sink.t1 - sink.w0),
        "connections": len(pipeline.connections),
    }
    print("RESULT " + json.dumps(result), flush=True)


def collector_run(sink: str, keys: dict[str, str], n: int, products: int) -> dict[str, Any]:
    """Feed ``n`` match frames over ``products`` products into one collector child process."""
    work = Path(tempfile.mkdtemp(prefix="tickwire-nats-bench-"))
    products_file = work / "products.txt"
    products_file.write_text("\n".join(f"S{i:05d}-USD" for i in range(products)))
    feed = subprocess.Popen(
        [
            *(sys.executable, str(FEED), "--mode", "burst", "--n", str(n)),
            *("--products-file", str(products_file), "--heartbeat", "3600"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert feed.stdin is not None and feed.stdout is not None
    try:
        _, ws, rest = feed.stdout.readline().split()
        spec = {"sink": sink, "keys": keys, "n": n, "products_file": str(products_file)}
        spec |= {"ws": ws, "rest": rest}
        child = subprocess.Popen(
            [sys.executable, __file__, "--collector", json.dumps(spec)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        try:
            up = child.stdout.readline().split()
            if not up or up[0] != "UP":
                raise RuntimeError(f"collector child did not start: {up}")
            feed.stdin.write(f"GO {up[1]}\n")
            feed.stdin.flush()
            line = child.stdout.readline()
            while line and not line.startswith("RESULT "):
                line = child.stdout.readline()
            if not line:
                raise RuntimeError(f"collector child ended without a result ({child.wait()})")
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            child.wait(timeout=60)
        finally:
            if child.poll() is None:
                child.terminate()
                child.wait(timeout=30)
            child.stdout.close()
    finally:
        feed.stdin.close()
        try:
            feed.wait(timeout=30)
        except subprocess.TimeoutExpired:
            feed.terminate()
            feed.wait(timeout=30)
        feed.stdout.close()
    return result


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--url", default="nats://127.0.0.1:4222")
    parser.add_argument("--collector-events", type=int, default=50_000)
    parser.add_argument("--products", type=int, default=100)
    parser.add_argument("--writer")
    parser.add_argument("--collector")
    args = parser.parse_args()
    if args.writer:
        await writer_process(json.loads(args.writer))
        return
    if args.collector:
        await collector_process(json.loads(args.collector))
        return
    assert "127.0.0.1" in args.url or "[::1]" in args.url, "benchmarks use loopback only"
    events = trades(args.events)
    load = os.getloadavg()[0]
    print(
        f"events: {len(events):,} trades over 200 symbols, one message per event; "
        f"load average {load:.2f} on {os.cpu_count()} CPUs (above ~1: contended)"
    )
    base = await floor(args.url, events)
    print(
        f"floor   bare nats-py publish_async + Msg-Id, acks per 1000: {base:>9,.0f} msgs/s"
        "   (ref §2.3: 34,127-38,312)"
    )
    rate, core, stream, prefix = await collector(args.url, events)
    print(
        f"sink    NatsSink.write_batch(5000) (encode+id+publish+acks): {rate:>9,.0f} events/s"
        f"   = {rate / base:.0%} of the floor; client CPU {core:.0%} of a core"
    )
    nc = await nats.connect(args.url)
    try:
        for n in (1, 2):
            rate = await writers(args.url, stream, prefix, len(events), n)
            print(
                f"writer  {n} writer process(es), nats -> null sink, ack after commit: "
                f"{rate:>9,.0f} events/s   = {rate / base:.0%} of the floor"
                "   (ref §2.3 pull+ack each: 28,495-42,642)"
            )
    finally:
        await nc.jetstream().delete_stream(stream)
        await nc.close()
    n, k = args.collector_events, args.products
    if n <= 0:
        return
    tag = uuid.uuid4().hex[:10]
    keys = {"url": args.url, "stream": f"TWBENCH_{tag}", "subject_prefix": f"twbench_{tag}"}
    try:
        null = await asyncio.to_thread(collector_run, "null", keys, n, k)
        full = await asyncio.to_thread(collector_run, "nats", keys, n, k)
    finally:
        nc = await nats.connect(args.url)
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(keys["stream"])
        await nc.close()
    for name, r in (("null sink", null), ("nats sink", full)):
        rate = r["trades"] / r["elapsed"]
        print(
            f"collector  fake Coinbase feed -> coinbase source ({k} products, "
            f"{r['connections']} connections) -> {name}: {rate:>9,.0f} trades/s"
            f"   = {rate / base:.0%} of the floor; collector CPU {r['cpu_share']:.0%}"
            " of a core"
        )


if __name__ == "__main__":
    asyncio.run(main())
