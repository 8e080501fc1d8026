"""Latency from server send to sink commit, through the real pipeline, at a paced offered rate.

The fake Coinbase Exchange runs in a child process (``bench/_feed.py``: ``FakeCoinbase`` for the
protocol, a paced sender for the ``match`` frames); each frame's ``time`` is the clock read just
before it is sent. This process runs ``tickwire.pipeline.Pipeline`` (coinbase source, 2 products,
1m candles, one configured sink) with the sink wrapped so that, when ``write_batch`` returns,
``time.time_ns() - trade.ts`` is noted for every trade of the batch: server send to sink commit.
``received_ts - ts`` (send to the pipeline's socket read) is shown too, so the sink's share is
visible. The first ``--warmup`` seconds of sends are left out::

    uv run --all-packages python bench/latency.py [--rates 10000,50000] [--seconds 8]
        [--sinks sqlite,redis,timescale] [--flush 0,0.2]

``--flush`` runs every case once per sink ``flush_interval`` (seconds): 0 is the default
configuration (group commit: a batch is what arrived while the previous write was in flight, so
the latency is about one write), 0.2 the former default (a partial batch waits up to 200 ms for
more, from its oldest event: fewer, larger writes). ``batches`` and ``us/msg`` show what the
smaller batches cost.
Services: Redis 127.0.0.1:6379 (key prefix ``twlat-<run>``, deleted afterwards) and PostgreSQL
``TICKWIRE_BENCH_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``; schema
``tw_lat_<run>_*``, dropped afterwards). Reference: p99 < 50 ms at 10k msgs/s into PostgreSQL.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import asyncpg
import redis.asyncio as aioredis

import tickwire_coinbase
import tickwire_redis
import tickwire_sqlite
import tickwire_timescale
from tickwire import Pipeline, Settings
from tickwire.events import Event, Trade

sys.path.insert(0, str(Path(__file__).parent))
from _feed import host_cpu, proc_cpu  # bench/ is not a package: by path

FEED = Path(__file__).with_name("_feed.py")
DISK_PROBE = Path(__file__).with_name("_disk_probe.py")
DSN = os.environ.get("TICKWIRE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REDIS = "redis://127.0.0.1:6379/0"
PRODUCTS = ("BTC-USD", "ETH-USD")
PLUGINS = {"sqlite": tickwire_sqlite, "redis": tickwire_redis, "timescale": tickwire_timescale}
LABELS = {"sqlite": "SQLite", "redis": "Redis", "timescale": "PostgreSQL"}


class CommitClock:
    """Wraps a sink: notes send-to-commit latency for each trade once ``write_batch`` returns."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.ts: list[int] = []
        self.commit: list[int] = []
        self.received: list[int] = []
        self.batches = 0
        #: Milliseconds each ``write_batch`` took.
        self.writes: list[float] = []
        #: Trades sent at or after this time (ns) are counted in ``fresh``.
        self.since = 1 << 62
        self.fresh = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def open(self) -> None:
        await self._inner.open()

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def write_batch(self, events: Sequence[Event]) -> None:
        started = time.perf_counter()
        await self._inner.write_batch(events)
        now = time.time_ns()
        self.writes.append((time.perf_counter() - started) * 1000)
        self.batches += 1
        since = self.since
        for e in events:
            if type(e) is Trade:
                self.ts.append(e.ts)
                self.commit.append(now)
                self.received.append(e.received_ts)
                if e.ts >= since:
                    self.fresh += 1


def sink_entry(kind: str, run: str, work: Path, flush: float) -> dict[str, Any]:
    common = {"flush_interval": f"{flush * 1000:g}ms"}
    if kind == "sqlite":
        return {"type": "sqlite", "path": str(work / f"{run}.db"), "retention": None, **common}
    if kind == "redis":
        return {"type": "redis", "url": REDIS, "prefix": f"twlat-{run}", **common}
    return {"type": "timescale", "dsn": DSN, "schema": f"tw_lat_{run}", "retention": None, **common}


async def clean(kind: str, run: str) -> None:
    if kind == "redis":
        client = aioredis.Redis.from_url(REDIS)
        try:
            keys = [k async for k in client.scan_iter(match=f"twlat-{run}:*", count=1000)]
            for i in range(0, len(keys), 1000):
                await client.delete(*keys[i : i + 1000])
        finally:
            await client.aclose()
    elif kind == "timescale":
        conn = await asyncpg.connect(DSN)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS tw_lat_{run} CASCADE")
        finally:
            await conn.close()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


async def read_line(stream: anyio.abc.ByteReceiveStream, buf: bytearray) -> str:
    while b"\n" not in buf:
        buf.extend(await stream.receive())
    line, _, rest = bytes(buf).partition(b"\n")
    buf[:] = rest
    return line.decode()


class LoopLag:
    """The longest this process's event loop was late waking a 1 ms sleeper (ms): how long the
    loop was blocked (CPU taken by other processes, a GC pause, blocking calls)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.scope = anyio.CancelScope()

    async def run(self) -> None:
        with self.scope:
            while True:
                started = time.perf_counter()
                await anyio.sleep(0.001)
                self.worst = max(self.worst, (time.perf_counter() - started) * 1000 - 1)


async def one(
    kind: str, rate: float, seconds: float, flush: float, warmup: float, work: Path
) -> dict[str, Any]:
    run = f"{uuid.uuid4().hex[:8]}"
    cmd = [
        sys.executable,
        str(FEED),
        "--mode",
        "paced",
        "--rate",
        str(rate),
        "--seconds",
        str(seconds + warmup),
        "--products",
        ",".join(PRODUCTS),
    ]
    probe_cmd = [sys.executable, str(DISK_PROBE), "--dir", str(work)]
    async with (
        await anyio.open_process(cmd, stderr=None) as proc,
        await anyio.open_process(probe_cmd, stderr=None) as probe,
        anyio.create_task_group() as tg,
    ):
        assert proc.stdout is not None and proc.stdin is not None
        assert probe.stdout is not None and probe.stdin is not None
        probe_buf = bytearray()
        await read_line(probe.stdout, probe_buf)  # PROBING
        lag = LoopLag()
        buf = bytearray()
        ready = (await read_line(proc.stdout, buf)).split()
        ws_url, rest_url = ready[1], ready[2]
        settings = Settings(
            sources=[
                {
                    "provider": "coinbase",
                    "symbols": list(PRODUCTS),
                    "channels": ["trades"],
                    "ws_url": ws_url,
                    "rest_url": rest_url,
                }
            ],
            sinks=[sink_entry(kind, run, work, flush)],
            bootstrap={"days": 0},
            runner={"deadletter": str(work / "deadletter"), "spill_dir": str(work / "spill")},
        )
        pipeline = Pipeline(
            settings, plugins=(tickwire_coinbase, PLUGINS[kind]), entry_points=False
        )
        rs = pipeline.running_sinks[0]
        clock = CommitClock(rs.sink)
        rs.sink = clock
        try:
            async with pipeline:
                with anyio.fail_after(60):
                    while not rs.writable:
                        await anyio.sleep(0.01)
                clock.since = time.time_ns() // 1000 * 1000
                tg.start_soon(lag.run)
                await probe.stdin.send(b"GO\n")
                await proc.stdin.send(f"GO {len(pipeline.connections)}\n".encode())
                cpu0, wall0 = time.process_time(), time.perf_counter()
                host0, feed0 = host_cpu()[0], proc_cpu(proc.pid)
                with anyio.fail_after(seconds + warmup + 120):
                    sent_line = (await read_line(proc.stdout, buf)).split()
                    while sent_line[0] != "SENT":  # SENDING
                        sent_line = (await read_line(proc.stdout, buf)).split()
                sent, first, last = int(sent_line[1]), int(sent_line[2]), int(sent_line[3])
                # Wait for every sent trade to be committed (or give up after 60 s more).
                first_us = first // 1000 * 1000
                with anyio.move_on_after(60):
                    while clock.fresh < sent:
                        await anyio.sleep(0.02)
                cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
                feed_cpu = proc_cpu(proc.pid) - feed0
                other = host_cpu()[0] - host0 - cpu - feed_cpu
                lag.scope.cancel()
                await probe.stdin.aclose()
                disk = (await read_line(probe.stdout, probe_buf)).split()
                pipeline.stop()
            await proc.stdin.aclose()
        finally:
            await clean(kind, run)
    cutoff = first_us + int(warmup * 1e9)
    lat = sorted((c - t) / 1e6 for t, c in zip(clock.ts, clock.commit, strict=True) if t >= cutoff)
    net = sorted(
        (r - t) / 1e6 for t, r in zip(clock.ts, clock.received, strict=True) if t >= cutoff
    )
    measured = [t for t in clock.ts if t >= first_us]
    return {
        "sink": kind,
        "rate": rate,
        "flush": flush,
        "sent": sent,
        "committed": len(measured),
        "achieved": sent / ((last - first) / 1e9) if last > first else float("nan"),
        "p50": pct(lat, 0.50),
        "p99": pct(lat, 0.99),
        "max": lat[-1] if lat else float("nan"),
        "net_p99": pct(net, 0.99),
        "write_p99": pct(sorted(clock.writes), 0.99),
        "write_max": max(clock.writes, default=float("nan")),
        "loop_max": lag.worst,
        "disk_max": float(disk[4]),
        "disk_slow": int(disk[5]),
        "batches": clock.batches,
        "cpu": cpu / wall if wall else float("nan"),
        "us_msg": cpu / sent * 1e6 if sent else float("nan"),
        "feed": feed_cpu / wall if wall else float("nan"),
        "other": other / wall if wall else float("nan"),
        "n": len(lat),
    }


async def main(args: argparse.Namespace) -> None:
    logging.getLogger("tickwire").setLevel(logging.WARNING)
    rates = [float(r) for r in args.rates.split(",")]
    sinks = args.sinks.split(",")
    flushes = [float(f) for f in args.flush.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tickwire-latency-"))
    print(
        f"latency, server send -> sink write_batch returned; {len(PRODUCTS)} products, "
        f"{args.seconds:g} s measured after {args.warmup:g} s warm-up per case; "
        "percentiles over every trade in the window (ms)"
    )
    columns = (
        ("sink", 11, lambda r: LABELS[r["sink"]]),
        ("offered/s", 9, lambda r: f"{r['rate']:,.0f}"),
        ("sent/s", 8, lambda r: f"{r['achieved']:,.0f}"),
        ("flush", 6, lambda r: f"{r['flush'] * 1000:g}ms"),
        ("p50 ms", 8, lambda r: f"{r['p50']:.1f}"),
        ("p99 ms", 8, lambda r: f"{r['p99']:.1f}"),
        ("max ms", 8, lambda r: f"{r['max']:.1f}"),
        ("recv p99", 8, lambda r: f"{r['net_p99']:.1f}"),
        ("write p99", 9, lambda r: f"{r['write_p99']:.1f}"),
        ("write max", 9, lambda r: f"{r['write_max']:.1f}"),
        ("loop max", 8, lambda r: f"{r['loop_max']:.1f}"),
        ("disk max", 8, lambda r: f"{r['disk_max']:.1f}"),
        ("batches", 7, lambda r: f"{r['batches']}"),
        ("cpu", 5, lambda r: f"{r['cpu']:.0%}"),
        ("us/msg", 6, lambda r: f"{r['us_msg']:.1f}"),
        ("feed", 5, lambda r: f"{r['feed']:.0%}"),
        ("other", 5, lambda r: f"{r['other']:.0%}"),
        ("lost", 5, lambda r: f"{r['sent'] - r['committed']}"),
    )
    print(
        " ".join(
            f"{name:<{w}}" if i == 0 else f"{name:>{w}}" for i, (name, w, _) in enumerate(columns)
        )
    )
    results = []
    for rate in rates:
        for flush in flushes:
            for kind in sinks:
                r = await one(kind, rate, args.seconds, flush, args.warmup, work)
                results.append(r)
                cells = [f(r) for _, _, f in columns]
                print(
                    " ".join(
                        f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                        for i, (c, (_, w, _)) in enumerate(zip(cells, columns, strict=True))
                    ),
                    flush=True,
                )
    for r in results:
        if r["sink"] == "timescale" and r["rate"] == 10_000:
            verdict = "met" if r["p99"] < 50 else "NOT met"
            print(
                f"reference: p99 < 50 ms at 10k msgs/s into PostgreSQL (flush "
                f"{r['flush'] * 1000:g} ms): p99 {r['p99']:.1f} ms -> {verdict}"
            )
    print(
        "recv p99: send -> socket read in the pipeline (the rest is normalize, queue, batch "
        "wait, write); write p99/max: of the sink's write_batch calls (ms); loop max: the longest "
        "this process's event loop was blocked (ms); disk max: the slowest fdatasync of a 4 KiB "
        "write by a probe process, every 10 ms meanwhile (a commit waits for the same kind of "
        "flush: a stall in both at once is the disk's); cpu: this process's "
        "CPU over the run (1 core = 100%); us/msg: that CPU per message sent (one core "
        "sustains at most 1e6 / us/msg msgs/s); feed: the fake's CPU; other: every other "
        "process on the host (database servers and other work); lost: sent but not committed "
        "within 60 s after the last send"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10000,50000", help="offered msgs/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=8, help="measured seconds per case")
    parser.add_argument("--warmup", type=float, default=1, help="seconds of sends left out")
    parser.add_argument("--sinks", default="sqlite,redis,timescale")
    parser.add_argument(
        "--flush", default="0,0.2", help="sink flush_interval values, seconds (0: default)"
    )
    anyio.run(main, parser.parse_args())
