"""A fast sender for the project's fake Coinbase Exchange, in its own process (for bench/).

``FakeCoinbase`` (``tickwire_coinbase.testing``) does the protocol: the handshake, the
``subscribe`` and its ``subscriptions`` ack, ``last_match`` per product, heartbeats. Its
``trade()`` also keeps a REST history and an order book per trade, which costs far more per
message than the 10k-50k msgs/s the benchmarks offer, so once every connection has subscribed
this sender writes ``match`` frames itself, in the fake's format, each product on the connection
subscribed to it, trade ids going on from the fake's last one (no gap for the detector):

* ``paced``: ``--rate`` messages a second for ``--seconds``, each sent with ``ServerConnection
  .send`` the moment it is due; its ``time`` field is the clock (``time.time_ns``, µs as
  Coinbase writes it) read just before that send, so ``commit time - Trade.ts`` is the latency
  from server send to sink commit (both processes read the same system clock);
* ``burst``: ``--n`` messages round-robin over the products, framed up front and written straight
  to each connection's transport in ~256 KiB chunks with write-buffer flow control (as the
  shared throughput harness does), so the sender is never what limits the client.

Protocol with the parent, one line each: this prints ``READY <ws_url> <rest_url>``; the parent
writes ``GO <connections>`` once its pipeline and sinks are up; this waits for that many
subscribed connections, prepares, prints ``SENDING`` just before the first frame goes out,
sends, prints ``SENT <n> <first send ns> <last send ns>`` and waits for its stdin to close.
Run by ``bench/latency.py`` and ``bench/scale.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import struct
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from websockets.asyncio.server import ServerConnection

from tickwire_coinbase.testing import FakeCoinbase

CHUNK = 256 * 1024
HIGH_WATER = 1024 * 1024
_IDS = [str(uuid.UUID(int=i * 0x9E3779B97F4A7C15 % (1 << 128), version=4)) for i in range(257)]


def ws_frame(payload: bytes) -> bytes:
    """One unmasked, final text frame (server to client), as RFC 6455 writes it."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + struct.pack("!H", n) + payload
    return bytes((0x81, 127)) + struct.pack("!Q", n) + payload


def host_cpu() -> tuple[float, float]:
    """``(busy, total)`` CPU seconds of the whole machine so far (``/proc/stat``)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / tick, sum(fields) / tick


def proc_cpu(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` (utime + stime), NaN if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Clock:
    """``time.time_ns()`` as the fake writes it (``2026-12-01T18:00:00.123456Z``), cached per
    second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def iso(self, ns: int) -> str:
        second, rest = divmod(ns, 1_000_000_000)
        if second != self._second:
            self._second = second
            self._prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._prefix}.{rest // 1000:06d}Z"


class Match:
    """Builds one product's ``match`` frames with consecutive trade ids."""

    __slots__ = ("i", "product", "sequence", "trade_id")

    def __init__(self, product: str, last_trade_id: int) -> None:
        self.product = product
        self.trade_id = last_trade_id
        self.sequence = 10_000_000 + last_trade_id
        self.i = 0

    def text(self, when: str) -> str:
        self.trade_id += 1
        self.sequence += 1
        self.i += 1
        i = self.i
        side = "buy" if i % 3 else "sell"
        return (
            f'{{"type":"match","trade_id":{self.trade_id},"maker_order_id":"{_IDS[i % 257]}",'
            f'"taker_order_id":"{_IDS[(i + 7) % 257]}","side":"{side}",'
            f'"size":"0.{i % 997 + 1:08d}",'
            f'"price":"{100 + i % 500}.{i % 100:02d}","product_id":"{self.product}",'
            f'"sequence":{self.sequence},"time":"{when}"}}'
        )


def routes(fake: FakeCoinbase, products: list[str]) -> dict[str, ServerConnection]:
    """The connection subscribed to ``matches`` for each product.

    The fake has no public per-product raw send (``send_raw`` goes to every connection), so
    this reads its client table once; nothing else of the fake's internals is used.
    """
    table: dict[str, ServerConnection] = {}
    for client in fake._clients:
        for product in client.channels.get("matches", ()):
            table[product] = client.ws
    missing = [p for p in products if p not in table]
    if missing:
        raise RuntimeError(f"{len(missing)} products not subscribed, e.g. {missing[:3]}")
    return table


async def paced(
    table: dict[str, ServerConnection], makers: list[Match], rate: float, seconds: float
) -> tuple[int, int, int]:
    clock = Clock()
    total = int(rate * seconds)
    sent = 0
    first = last = 0
    wanted = [table[m.product] for m in makers]
    k = len(makers)
    print("SENDING", flush=True)
    started = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - started) * rate) + 1)
        while sent < due:
            j = sent % k
            now = time.time_ns()
            await wanted[j].send(makers[j].text(clock.iso(now)))
            if not sent:
                first = now
            last = now
            sent += 1
        await asyncio.sleep(0.0002)
    return sent, first, last


async def burst(
    table: dict[str, ServerConnection], makers: list[Match], n: int
) -> tuple[int, int, int]:
    clock = Clock()
    when = clock.iso(time.time_ns())
    k = len(makers)
    per_conn: dict[ServerConnection, list[bytes]] = {}
    for i in range(n):
        m = makers[i % k]
        ws = table[m.product]
        frames = per_conn.setdefault(ws, [])
        frames.append(ws_frame(m.text(when).encode()))
    # Chunks of whole frames per connection; connections take turns, one chunk each.
    chunks: dict[ServerConnection, list[bytes]] = {}
    for ws, frames in per_conn.items():
        out, buf, size = [], [], 0
        for f in frames:
            buf.append(f)
            size += len(f)
            if size >= CHUNK:
                out.append(b"".join(buf))
                buf, size = [], 0
        if buf:
            out.append(b"".join(buf))
        chunks[ws] = out
    print("SENDING", flush=True)
    first = time.time_ns()
    pending = {ws: iter(c) for ws, c in chunks.items()}
    while pending:
        for ws in list(pending):
            transport: Any = ws.transport
            while transport.get_write_buffer_size() > HIGH_WATER:
                await asyncio.sleep(0.0005)
            data = next(pending[ws], None)
            if data is None:
                del pending[ws]
                continue
            transport.write(data)
        await asyncio.sleep(0)
    return n, first, time.time_ns()


async def main(args: argparse.Namespace) -> None:
    products = args.products.split(",") if args.products else []
    if args.products_file:
        products = Path(args.products_file).read_text().split()  # noqa: ASYNC240 - at start-up
    loop = asyncio.get_running_loop()
    async with FakeCoinbase(
        products,
        seed=1,
        history_days=0.001,
        history_gap=60,
        heartbeat_interval=args.heartbeat,
        subscribe_deadline=120,
    ) as fake:
        print(f"READY {fake.ws_url} {fake.rest_url}", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        connections = int(line.split()[1])
        await fake.wait_subscribed(connections, timeout=300)
        table = routes(fake, products)
        makers = [Match(p, fake.last_trade_id(p)) for p in products]
        if args.mode == "paced":
            sent, first, last = await paced(table, makers, args.rate, args.seconds)
        else:
            sent, first, last = await burst(table, makers, args.n)
        print(f"SENT {sent} {first} {last}", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", default="BTC-USD,ETH-USD")
    parser.add_argument("--products-file")
    parser.add_argument("--mode", choices=("paced", "burst"), default="paced")
    parser.add_argument("--rate", type=float, default=10_000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--heartbeat", type=float, default=1.0, help="heartbeat interval, s")
    asyncio.run(main(parser.parse_args()))
