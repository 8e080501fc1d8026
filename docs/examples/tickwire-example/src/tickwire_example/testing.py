"""A protocol-faithful fake of the Example Exchange, for tests and ``tickwire demo``.

A real server on 127.0.0.1 (``websockets``): websocket upgrades get the feed, plain ``GET``
requests get the REST endpoints, on one port. It is what ``tickwire.testing.check_provider``
runs against, so it implements the two controls the kit needs, :meth:`drop_connections` and
:meth:`send_raw`, plus a seeded simulated market.

::

    async with FakeExchange() as fake:
        fake.simulate(rate_per_s=20)
        source = fake.source(["AAA-USD", "BBB-USD"])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from decimal import Decimal
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

_MS = 1_000_000


class _Client:
    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.symbols: set[str] = set()
        self.channels: set[str] = set()


class FakeExchange:
    """The Example Exchange on ``127.0.0.1:<port>``.

    :param symbols: the symbols it lists (``None``: any ``BASE-QUOTE``).
    :param heartbeat_interval: seconds between heartbeats on every connection.
    :param seed: seed of the simulated market.
    """

    def __init__(
        self,
        symbols: list[str] | None = None,
        *,
        heartbeat_interval: float = 1.0,
        seed: int = 1,
        port: int = 0,
    ) -> None:
        self.symbols = symbols
        self.heartbeat_interval = heartbeat_interval
        self.port = port
        self.received: list[dict[str, Any]] = []
        self.rest_requests: list[str] = []
        self._rng = random.Random(seed)
        self._clients: set[_Client] = set()
        self._history: dict[str, list[tuple[int, Decimal, Decimal]]] = {}
        self._next_id: dict[str, int] = {}
        self._price: dict[str, Decimal] = {}
        self._rate_limited = 0
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # ---- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._server = await serve(
            self._handle, "127.0.0.1", self.port, process_request=self._process_request
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._spawn(self._heartbeats())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @property
    def ws_url(self) -> str:
        """The feed's address."""
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def rest_url(self) -> str:
        """The REST base address."""
        return f"http://127.0.0.1:{self.port}"

    def source(self, symbols: list[str], channels: list[str] | None = None) -> dict[str, Any]:
        """A ``[[sources]]`` table pointing at this fake."""
        return {
            "provider": "example",
            "symbols": symbols,
            "channels": channels or ["trades", "quotes"],
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
        }

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- test controls -------------------------------------------------------------------

    def simulate(self, rate_per_s: float = 20) -> None:
        """Publish random-walk trades (and quotes) for every subscribed symbol."""
        self._spawn(self._simulate(rate_per_s))

    async def trade(
        self, symbol: str, price: str, size: str, side: str = "buy", ts_ms: int | None = None
    ) -> None:
        """Publish one trade (and the quote around it) to the symbol's subscribers."""
        ts_ms = ts_ms if ts_ms is not None else time.time_ns() // _MS
        trade_id = self._next_id.get(symbol, 1)
        self._next_id[symbol] = trade_id + 1
        self._history.setdefault(symbol, []).append((ts_ms, Decimal(price), Decimal(size)))
        frame = {
            "type": "trade",
            "symbol": symbol,
            "id": trade_id,
            "price": price,
            "size": size,
            "side": side,
            "time": ts_ms,
        }
        spread = Decimal("0.01")
        quote = {
            "type": "quote",
            "symbol": symbol,
            "bid": str(Decimal(price) - spread),
            "bid_size": "1.5",
            "ask": str(Decimal(price) + spread),
            "ask_size": "2",
            "time": ts_ms,
        }
        await self._publish(symbol, "trades", frame)
        await self._publish(symbol, "quotes", quote)

    def rate_limit_next_rest(self, n: int = 1) -> None:
        """Answer the next ``n`` REST requests with HTTP 429."""
        self._rate_limited = n

    async def drop_connections(self) -> None:
        """Cut every connection abruptly (no close frame), as a network failure would."""
        for client in list(self._clients):
            client.ws.transport.abort()
        for _ in range(100):
            if not self._clients:
                return
            await asyncio.sleep(0.01)

    async def send_raw(self, frame: str) -> None:
        """Send ``frame`` as it is to every client (malformed input, say)."""
        for client in list(self._clients):
            with contextlib.suppress(ConnectionClosed):
                await client.ws.send(frame)

    # ---- the feed ------------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(ws)
        self._clients.add(client)
        try:
            async for raw in ws:
                try:
                    message = json.loads(raw)
                except ValueError:
                    await ws.send(json.dumps({"type": "error", "message": "not JSON"}))
                    continue
                self.received.append(message)
                if message.get("op") != "subscribe":
                    await ws.send(json.dumps({"type": "error", "message": "unknown op"}))
                    continue
                for symbol in message.get("symbols", []):
                    if self.symbols is not None and symbol not in self.symbols:
                        await ws.send(
                            json.dumps(
                                {"type": "error", "message": "unknown symbol", "symbol": symbol}
                            )
                        )
                    else:
                        client.symbols.add(symbol)
                client.channels.update(message.get("channels", ["trades"]))
                await ws.send(json.dumps({"type": "subscribed", "symbols": sorted(client.symbols)}))
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(client)

    async def _publish(self, symbol: str, channel: str, frame: dict[str, Any]) -> None:
        text = json.dumps(frame)
        for client in list(self._clients):
            if symbol in client.symbols and channel in client.channels:
                with contextlib.suppress(ConnectionClosed):
                    await client.ws.send(text)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            text = json.dumps({"type": "heartbeat", "time": time.time_ns() // _MS})
            for client in list(self._clients):
                with contextlib.suppress(ConnectionClosed):
                    await client.ws.send(text)

    async def _simulate(self, rate_per_s: float) -> None:
        while True:
            await asyncio.sleep(1 / rate_per_s)
            symbols = sorted({s for c in self._clients for s in c.symbols})
            for symbol in symbols:
                price = self._price.get(symbol, Decimal("100.00"))
                price = max(Decimal("0.01"), price + Decimal(self._rng.randint(-5, 5)) / 100)
                self._price[symbol] = price
                size = Decimal(self._rng.randint(1, 1000)) / 100
                side = self._rng.choice(["buy", "sell"])
                await self.trade(symbol, str(price), str(size), side)

    # ---- REST ----------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return None
        self.rest_requests.append(request.path)
        if self._rate_limited > 0:
            self._rate_limited -= 1
            return _response(429, {"message": "too many requests"}, {"Retry-After": "0.1"})
        url = urlsplit(request.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path != "/candles":
            return _response(404, {"message": "not found"})
        try:
            symbol = query["symbol"]
            step = int(query["interval"]) * 1000
            start, end = int(query["start"]), int(query["end"])
            limit = min(int(query.get("limit", 500)), 500)
        except (KeyError, ValueError):
            return _response(400, {"message": "symbol, interval, start and end are required"})
        return _response(200, self.candle_rows(symbol, step, start, end)[:limit])

    def candle_rows(self, symbol: str, step_ms: int, start_ms: int, end_ms: int) -> list[list[Any]]:
        """The server's truth: ``[start_ms, open, high, low, close, volume]`` rows, oldest first.

        A bucket with no trades has no row, as on real exchanges.
        """
        buckets: dict[int, list[tuple[Decimal, Decimal]]] = {}
        for ts, price, size in self._history.get(symbol, []):
            if start_ms <= ts < end_ms:
                buckets.setdefault(ts - ts % step_ms, []).append((price, size))
        rows: list[list[Any]] = []
        for begin in sorted(buckets):
            prices = [p for p, _ in buckets[begin]]
            volume = sum((s for _, s in buckets[begin]), Decimal(0))
            rows.append(
                [
                    begin,
                    str(prices[0]),
                    str(max(prices)),
                    str(min(prices)),
                    str(prices[-1]),
                    str(volume),
                ]
            )
        return rows


def _response(status: int, body: Any, extra: dict[str, str] | None = None) -> Response:
    data = json.dumps(body).encode()
    headers = Headers(
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(data))),
            *(extra or {}).items(),
        ]
    )
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}
    return Response(status, reasons[status], headers, data)


__all__ = ("FakeExchange",)
