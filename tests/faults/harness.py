"""The fault-injection suite's harness: a fault-controlled fake feed, the real pipeline into
real SQLite, and the exact-comparison helpers every test ends with.

:class:`FaultFeed` is core's jsonfeed fake server (``core/tests/jsonfeed.py``) with a fault
controller: it records every trade it actually delivered to a subscribed client (so a test can
compare the store against exactly that), sends pings as heartbeats, rejects chosen symbols on
subscribe, refuses handshakes, closes with a chosen code, cuts a frame in the middle, stalls,
and sends whatever raw frame a test wants.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "core" / "tests"))

import jsonfeed  # noqa: E402

import tickwire_sqlite  # noqa: E402
from tickwire import Pipeline, Settings  # noqa: E402

LOCK = "/tmp/tickwire-service-restart.lock"
Row = tuple[str, str, int, str, str, str | None]


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    symbols: set[str] = field(default_factory=set)
    connected_at: float = 0.0


class FaultFeed:
    """The jsonfeed fake server with a fault controller (real websockets on 127.0.0.1)."""

    def __init__(self, *, port: int = 0, ping_every: float = 0.2) -> None:
        self.port = port
        self.ping_every = ping_every
        #: While False no pings are sent (heartbeats missing); trades still flow.
        self.heartbeats = True
        #: While True nothing at all is sent (a stall).
        self.stalled = False
        #: Symbols whose subscription is rejected with an error frame.
        self.reject_symbols: set[str] = set()
        #: Handshakes still to refuse with HTTP 503.
        self.refuse_next = 0
        self.clients: set[_Client] = set()
        #: Monotonic times at which subscribes arrived, in order.
        self.subscribe_times: list[float] = []
        self.connections = 0
        #: Every trade message some subscribed client received, as sent.
        self.delivered: list[dict[str, Any]] = []
        #: Trades sent while no client subscribed to the symbol (lost on the provider side).
        self.undelivered: list[dict[str, Any]] = []
        self.next_id: dict[str, int] = {}
        self._server: Any = None

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    # ---- the server ----------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return connection.respond(503, "Service Unavailable\n")
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        client = _Client(ws, connected_at=time.monotonic())
        try:
            msg = json.loads(await ws.recv())
            self.subscribe_times.append(time.monotonic())
            for symbol in msg["symbols"]:
                if symbol in self.reject_symbols:
                    await ws.send(
                        json.dumps({"type": "error", "symbol": symbol, "msg": "unknown symbol"})
                    )
                else:
                    client.symbols.add(symbol)
            self.clients.add(client)
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)

    async def _pings(self) -> None:
        while True:
            await anyio.sleep(self.ping_every)
            if self.heartbeats and not self.stalled:
                for client in list(self.clients):
                    with contextlib.suppress(websockets.ConnectionClosed):
                        await client.ws.send('{"type": "ping"}')

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FaultFeed]:
        async with (
            serve(
                self._handler, "127.0.0.1", self.port, process_request=self._process_request
            ) as server,
            anyio.create_task_group() as tg,
        ):
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._server = server
            tg.start_soon(self._pings)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    # ---- the market ----------------------------------------------------------------------

    async def trade(
        self, symbol: str, price: str = "100.25", size: str = "1", *, ts: int | None = None
    ) -> dict[str, Any]:
        """Send one trade to every client subscribed to ``symbol``; record who got it."""
        tid = self.next_id.get(symbol, 1)
        self.next_id[symbol] = tid + 1
        msg = {
            "type": "trade",
            "s": symbol,
            "p": price,
            "q": size,
            "t": ts if ts is not None else time.time_ns(),
            "id": tid,
            "side": "buy" if tid % 2 else "sell",
        }
        text = json.dumps(msg)
        got = False
        if not self.stalled:
            for client in list(self.clients):
                if symbol in client.symbols:
                    try:
                        await client.ws.send(text)
                        got = True
                    except websockets.ConnectionClosed:
                        pass
        (self.delivered if got else self.undelivered).append(msg)
        return msg

    async def send_raw(self, frame: str | bytes) -> None:
        for client in list(self.clients):
            with contextlib.suppress(websockets.ConnectionClosed):
                await client.ws.send(frame)

    # ---- faults --------------------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Cut every connection abruptly (no close frame)."""
        for client in list(self.clients):
            client.ws.transport.abort()
        await self._gone()

    async def cut_mid_frame(self, symbol: str) -> dict[str, Any]:
        """Write the first half of a trade frame, then cut the TCP connection."""
        tid = self.next_id.get(symbol, 1)
        self.next_id[symbol] = tid + 1
        msg = {"type": "trade", "s": symbol, "p": "1.5", "q": "1", "t": time.time_ns(), "id": tid}
        payload = json.dumps(msg).encode()
        header = (
            bytes([0x81, len(payload)])
            if len(payload) < 126
            else (bytes([0x81, 126]) + struct.pack("!H", len(payload)))
        )
        for client in list(self.clients):
            client.ws.transport.write(header + payload[: len(payload) // 2])
            client.ws.transport.abort()
        self.undelivered.append(msg)
        await self._gone()
        return msg

    async def close_all(self, code: int, reason: str) -> None:
        """Close every connection with a close frame ``code`` (e.g. a rate-limit code)."""
        for client in list(self.clients):
            with contextlib.suppress(websockets.ConnectionClosed):
                await client.ws.close(code, reason)
        await self._gone()

    async def _gone(self) -> None:
        with anyio.fail_after(5):
            while self.clients:
                await anyio.sleep(0.01)

    async def wait_clients(self, n: int = 1, timeout: float = 15) -> None:
        with anyio.fail_after(timeout):
            while len(self.clients) < n:
                await anyio.sleep(0.01)


def free_port() -> int:
    """A port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# ---- the pipeline ------------------------------------------------------------------------


def sqlite_sink(db: Path, **extra: Any) -> dict[str, Any]:
    return {
        "type": "sqlite",
        "path": str(db),
        "retention": None,
        "flush_interval": "20ms",
        **extra,
    }


def pipeline(
    tmp_path: Path,
    sources: list[dict[str, Any]],
    sinks: list[dict[str, Any]],
    *,
    plugins: tuple[object, ...] = (),
    runner: dict[str, Any] | None = None,
    extra_sinks: tuple[Any, ...] = (),
    candles: tuple[str, ...] = (),
) -> Pipeline:
    """The real pipeline (no entry points: only the plugins each test names), building the
    ``candles`` intervals (none by default)."""
    settings = Settings(
        sources=sources,
        sinks=sinks,
        candles={"intervals": list(candles)},
        bootstrap={"days": 0},
        runner={
            "backoff_initial": "50ms",
            "backoff_max": "500ms",
            "deadletter": str(tmp_path / "deadletter"),
            **(runner or {}),
        },
    )
    return Pipeline(
        settings,
        plugins=(jsonfeed, tickwire_sqlite, *plugins),
        entry_points=False,
        sinks=list(extra_sinks),
    )


def feed_source(feed: FaultFeed, symbols: list[str], **extra: Any) -> dict[str, Any]:
    return {"provider": "jsonfeed", "symbols": symbols, "ws_url": feed.ws_url, **extra}


# ---- what was stored ---------------------------------------------------------------------


def stored(db: Path, provider: str = "jsonfeed") -> list[Row]:
    """Every trade row of ``provider``, sorted: (symbol, id, ts, price, size, side)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(db)
    try:
        try:
            rows = conn.execute(
                "SELECT symbol, trade_id, ts, price, size, side FROM trades WHERE provider = ?",
                (provider,),
            ).fetchall()
        except sqlite3.OperationalError:
            return []
    finally:
        conn.close()
    return sorted(rows, key=lambda r: (r[0], int(r[1])))


def gaps(db: Path) -> list[tuple[str, str, int, int, str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(
            'SELECT symbol, kind, start, "end", reason, status FROM gaps ORDER BY symbol, start'
        ).fetchall()
    finally:
        conn.close()


def expected(messages: list[dict[str, Any]]) -> list[Row]:
    """The rows the store must hold for these trade messages, sorted like :func:`stored`."""
    rows = [(m["s"], str(m["id"]), m["t"], m["p"], m["q"], m.get("side")) for m in messages]
    return sorted(rows, key=lambda r: (r[0], int(r[1])))


async def until(predicate: Callable[[], bool], timeout: float = 15, what: str = "") -> None:
    """Wait until ``predicate()`` holds (fails after ``timeout`` seconds)."""
    try:
        with anyio.fail_after(timeout):
            while not predicate():
                await anyio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or predicate}") from None


def assert_exact(db: Path, feed: FaultFeed) -> None:
    """The store holds exactly what the feed delivered: nothing lost, nothing duplicated."""
    rows = stored(db)
    want = expected(feed.delivered)
    assert len(rows) == len(set(rows)), "duplicate rows"
    assert rows == want, (
        f"stored {len(rows)} trades, delivered {len(want)}; "
        f"missing {sorted(set(want) - set(rows))[:5]}, extra {sorted(set(rows) - set(want))[:5]}"
    )


# ---- shared services ---------------------------------------------------------------------


def service_missing(what: str) -> None:
    """Fail when CI is set, else skip, when a shared service is not running."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is not running (CI is set: a service test must not skip)")
    pytest.skip(f"{what} is not running on 127.0.0.1")


@contextlib.contextmanager
def restart_lock(start: Callable[[], None]) -> Iterator[None]:
    """Hold the machine-wide service-restart lock; always ``start()`` the service again."""
    with open(LOCK, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            start()
            fcntl.flock(fh, fcntl.LOCK_UN)


REDIS_START = [
    "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", "6379",
    "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
    "--logfile", "/var/log/redis/ci.log",
]  # fmt: skip


def redis_up() -> bool:
    done = subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "ping"],
        capture_output=True, text=True, timeout=5, check=False,
    )  # fmt: skip
    return done.stdout.strip() == "PONG"


def _wait(check: Callable[[], bool], up: bool, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while check() != up:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not {'start' if up else 'stop'} in {seconds}s")
        time.sleep(0.05)


def stop_redis() -> None:
    subprocess.run(
        ["redis-cli", "-h", "127.0.0.1", "-p", "6379", "shutdown", "nosave"],
        capture_output=True, timeout=10, check=False,
    )  # fmt: skip
    _wait(redis_up, False, "redis")


def start_redis() -> None:
    if not redis_up():
        subprocess.run(REDIS_START, check=True, timeout=20, capture_output=True)
    _wait(redis_up, True, "redis")


def _pg_version() -> str:
    return sorted(os.listdir("/etc/postgresql"))[0]


def pg_up() -> bool:
    done = subprocess.run(
        ["pg_isready", "-h", "127.0.0.1", "-p", "5432"], capture_output=True, timeout=10,
        check=False,
    )  # fmt: skip
    return done.returncode == 0


def stop_pg() -> None:
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "stop"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    _wait(pg_up, False, "postgresql")


def start_pg() -> None:
    if not pg_up():
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", _pg_version(), "main", "start"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    _wait(pg_up, True, "postgresql")
