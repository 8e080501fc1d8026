"""A protocol-faithful fake Finnhub: the websocket and the REST candles on one local port.

::

    from tickwire_finnhub.testing import FakeFinnhub

    async with FakeFinnhub() as fake:          # ws://127.0.0.1:<port>, http://.../api/v1
        source = {"provider": "finnhub", "symbols": ["AAPL"], "api_key": fake.api_key,
                  "ws_url": fake.ws_url, "rest_url": fake.rest_url}
        ...
        await fake.send_trades([{"s": "AAPL", "p": "189.5", "t": 1700000000000, "v": 100}])

It behaves as the protocol notes describe Finnhub (facts marked unverified there are choices
here, named below):

* **token**: ``?token=`` on the websocket, ``X-Finnhub-Token`` or ``token`` on REST; an
  unknown key is refused with HTTP 401 (the real status is unverified);
* **one connection per key**: a second connection with a key already connected is closed at
  once (``second_connection="drop_new"``, as observed in FH-ISS-158); ``"drop_old"`` and
  ``"drop_both"`` (the unverified third-party report) are there to test against;
* **symbol limit**: past ``max_symbols`` per connection each subscribe gets
  ``{"type":"error","msg":"Subscribing to too many symbols"}`` and no data; unsubscribing frees
  a slot. No subscription acknowledgement, as on Finnhub;
* **invalid symbols** (not in ``symbols``, when given) get ``{"msg":"Invalid symbol",
  "type":"error"}`` (``"Invalid symbol <S>"`` with ``name_symbol_in_errors=True``);
* **pings** ``{"type":"ping"}`` every ``ping_interval`` seconds;
* **trades**: :meth:`send_trades` sends one ``trade`` message (mixed symbols allowed, ``v: 0``
  price-only updates, ``c`` conditions) to each connection, holding the entries it subscribed;
  prices and sizes are written as JSON numbers with exactly the digits given;
* **market closed** (``market_open = False``): stock prints are not sent, only pings;
* **REST candles** ``/stock/candle``, ``/forex/candle``, ``/crypto/candle`` from
  :meth:`add_candles`, columnar and oldest first, ``{"s":"no_data"}`` for an empty range;
  ``candle_access=False`` answers 403 ``You don't have access to this resource.``;
  :meth:`rate_limit_next` and ``calls_per_minute`` answer 429;
* :meth:`drop_connections`, :meth:`send_raw` and :meth:`simulate` (a random-walk market).

Its ``websockets`` logger redacts tokens, so tests can check that no log line shows one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from tickwire_finnhub.connect import protect_logger
from tickwire_finnhub.settings import FOREX_BROKERS

SecondConnection = Literal["drop_new", "drop_old", "drop_both"]
Number = Decimal | str | int | float

_encoder = msgspec.json.Encoder(decimal_format="number")
_logger = protect_logger(logging.getLogger("tickwire_finnhub.testing.server"))
_RATE_LIMITED = "API limit reached. Please try again later. Remaining Limit: 0"
_NO_ACCESS = "You don't have access to this resource."
_RESOLUTIONS = frozenset({"1", "5", "15", "30", "60", "D", "W", "M"})
_MARKET_OF_PATH = {"/stock/candle": "stock", "/forex/candle": "forex", "/crypto/candle": "crypto"}


def market_of(symbol: str) -> str:
    """``stock``, ``forex`` or ``crypto`` by the symbol's form (as the plugin's default)."""
    prefix, sep, _ = symbol.partition(":")
    if not sep:
        return "stock"
    return "forex" if prefix.upper() in FOREX_BROKERS else "crypto"


def _number(value: Number) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


@dataclass(eq=False)
class FakeConnection:
    """One websocket client of the fake, as tests see it."""

    ws: ServerConnection
    key: str
    subscribed: list[str] = field(default_factory=list)
    received: list[Any] = field(default_factory=list)
    open: bool = True


class FakeFinnhub:
    """The fake server; use it as an async context manager (it serves while inside).

    :param api_keys: the keys it accepts; the first is :attr:`api_key`.
    :param symbols: the valid symbols (``None``: any symbol is valid).
    :param max_symbols: symbols one connection may subscribe (the plan's limit).
    :param ping_interval: seconds between pings.
    :param second_connection: what a second connection with the same key does.
    :param name_symbol_in_errors: write ``Invalid symbol <S>`` instead of ``Invalid symbol``.
    :param market_open: whether stock prints flow (crypto and forex always do).
    :param candle_access: ``False``: the candle endpoints answer 403 (a free plan).
    :param calls_per_minute: REST calls per minute per key before 429 (``None``: no limit).
    """

    def __init__(
        self,
        *,
        api_keys: Sequence[str] = ("fake-finnhub-key",),
        symbols: Iterable[str] | None = None,
        max_symbols: int = 50,
        ping_interval: float = 60.0,
        second_connection: SecondConnection = "drop_new",
        name_symbol_in_errors: bool = False,
        market_open: bool = True,
        candle_access: bool = True,
        calls_per_minute: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        if not api_keys:
            raise ValueError("FakeFinnhub needs at least one API key")
        self.api_keys = list(api_keys)
        self.symbols = None if symbols is None else set(symbols)
        self.max_symbols = max_symbols
        self.ping_interval = ping_interval
        self.second_connection: SecondConnection = second_connection
        self.name_symbol_in_errors = name_symbol_in_errors
        self.market_open = market_open
        self.candle_access = candle_access
        self.calls_per_minute = calls_per_minute
        self.host = host
        self.port = port
        #: Every connection ever accepted, in order (closed ones stay, with ``open`` False).
        self.connections: list[FakeConnection] = []
        #: Every REST request: ``(path, params)`` (the token is not kept).
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.rejected_handshakes = 0
        self._candles: dict[tuple[str, str, str], dict[int, tuple[Decimal, ...]]] = {}
        self._rate_limit_next = 0
        self._calls: dict[str, list[float]] = {}
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # ---- lifecycle ---------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The first accepted key."""
        return self.api_keys[0]

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:<port>`` (the client appends ``?token=``)."""
        return f"ws://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """``http://127.0.0.1:<port>/api/v1``."""
        return f"http://{self.host}:{self.port}/api/v1"

    async def __aenter__(self) -> FakeFinnhub:
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            logger=_logger,
            ping_interval=None,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- what tests look at ------------------------------------------------------------

    @property
    def live(self) -> list[FakeConnection]:
        """The connections open now."""
        return [c for c in self.connections if c.open]

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds (``TimeoutError`` after ``timeout`` s)."""
        async with asyncio.timeout(timeout):
            while not predicate(self):
                self._changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._changed.wait()

    async def wait_subscribed(self, symbols: Iterable[str], timeout: float = 10.0) -> None:
        """Wait until one live connection has subscribed every one of ``symbols``."""
        wanted = set(symbols)
        await self.wait_for(lambda f: any(wanted <= set(c.subscribed) for c in f.live), timeout)

    def _touch(self) -> None:
        self._changed.set()

    # ---- websocket -----------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        key = _token_of(ws.request) if ws.request is not None else ""
        conn = FakeConnection(ws, key)
        others = [c for c in self.live if c.key == key]
        self.connections.append(conn)
        self._touch()
        if others:
            if self.second_connection in ("drop_old", "drop_both"):
                for other in others:
                    other.open = False
                    await other.ws.close(1008, "")
            if self.second_connection in ("drop_new", "drop_both"):
                conn.open = False
                self._touch()
                await ws.close(1008, "")
                return
        pinger = self._spawn(self._ping_loop(conn))
        try:
            async for message in ws:
                await self._on_message(conn, message)
        except ConnectionClosed:
            pass
        finally:
            conn.open = False
            pinger.cancel()
            self._touch()

    async def _ping_loop(self, conn: FakeConnection) -> None:
        while conn.open:
            await asyncio.sleep(self.ping_interval)
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send('{"type":"ping"}')

    async def _on_message(self, conn: FakeConnection, message: str | bytes) -> None:
        try:
            msg = msgspec.json.decode(message)
        except msgspec.DecodeError:
            await self._error(conn, "Invalid message")
            return
        conn.received.append(msg)
        if not isinstance(msg, dict):
            await self._error(conn, "Invalid message")
            return
        kind, symbol = msg.get("type"), msg.get("symbol")
        if kind in ("subscribe-news", "subscribe-pr", "unsubscribe-news", "unsubscribe-pr"):
            pass
        elif kind not in ("subscribe", "unsubscribe"):
            await self._error(conn, "Invalid message")
        elif not isinstance(symbol, str):
            await self._error(conn, "Invalid symbol")
        elif kind == "unsubscribe":
            if symbol in conn.subscribed:
                conn.subscribed.remove(symbol)
        elif self.symbols is not None and symbol not in self.symbols:
            text = f"Invalid symbol {symbol}" if self.name_symbol_in_errors else "Invalid symbol"
            await self._error(conn, text)
        elif symbol in conn.subscribed:
            pass
        elif len(conn.subscribed) >= self.max_symbols:
            await self._error(conn, "Subscribing to too many symbols")
        else:
            conn.subscribed.append(symbol)
        self._touch()

    async def _error(self, conn: FakeConnection, text: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await conn.ws.send(_encoder.encode({"msg": text, "type": "error"}).decode())

    # ---- what tests and the simulator send -----------------------------------------------

    async def send_trades(self, prints: Sequence[Mapping[str, Any]]) -> int:
        """Send one ``trade`` message to each live connection, with the prints it subscribed.

        Each print is ``{"s", "p", "t", "v"}`` plus an optional ``"c"`` (list of codes or
        ``None``); ``p`` and ``v`` may be ``Decimal``, ``str``, ``int`` or ``float`` and are
        written as JSON numbers with exactly those digits. While the market is closed, stock
        prints are left out. Returns how many messages went out.
        """
        rows = []
        for p in prints:
            if not self.market_open and market_of(str(p["s"])) == "stock":
                continue
            row: dict[str, Any] = {
                "p": _number(p["p"]),
                "s": p["s"],
                "t": int(p["t"]),
                "v": _number(p["v"]),
            }
            if "c" in p:
                row["c"] = p["c"]
            rows.append(row)
        sent = 0
        for conn in self.live:
            mine = [r for r in rows if r["s"] in conn.subscribed]
            if not mine:
                continue
            frame = _encoder.encode({"data": mine, "type": "trade"}).decode()
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(frame)
                sent += 1
        return sent

    async def send_raw(self, frame: str | bytes) -> None:
        """Send ``frame`` as it is to every live connection."""
        for conn in self.live:
            with contextlib.suppress(ConnectionClosed):
                await conn.ws.send(frame)

    async def ping(self) -> None:
        """Send a ``ping`` now to every live connection."""
        await self.send_raw('{"type":"ping"}')

    async def drop_connections(self, code: int = 1011) -> None:
        """Close every live connection (``code`` 1011: a server error, as in an outage)."""
        for conn in self.live:
            conn.open = False
            await conn.ws.close(code, "")
        self._touch()

    def simulate(self, rate_per_s: float = 20.0, seed: int | None = None) -> None:
        """Stream a random-walk market to the subscribed symbols (stops with the server).

        Mixed-symbol messages of one to three prints; stocks trade in whole shares with
        condition codes; a tenth of the forex and crypto prints are ``v: 0`` price updates.
        """
        self._spawn(self._simulate(rate_per_s, random.Random(seed)))

    async def _simulate(self, rate: float, rng: random.Random) -> None:
        prices: dict[str, Decimal] = {}
        while True:
            await asyncio.sleep(1 / rate)
            symbols = sorted({s for c in self.live for s in c.subscribed})
            if not symbols:
                continue
            now_ms = time.time_ns() // 1_000_000
            prints = []
            for symbol in rng.sample(symbols, k=min(len(symbols), rng.randint(1, 3))):
                market = market_of(symbol)
                places = 2 if market == "stock" else 5
                price = prices.get(symbol) or Decimal(
                    {"stock": "190.00", "forex": "1.08000"}.get(market, "60000.00")
                )
                price = (price * (1 + Decimal(rng.gauss(0, 0.0005)))).quantize(
                    Decimal(1).scaleb(-places)
                )
                prices[symbol] = price
                if market == "stock":
                    size = Decimal(rng.randint(1, 500))
                    row = {"s": symbol, "p": price, "t": now_ms, "v": size, "c": ["1", "12"]}
                else:
                    size = Decimal(rng.randint(1, 100_000)).scaleb(-5)
                    if rng.random() < 0.1:
                        size = Decimal(0)
                    row = {"s": symbol, "p": price, "t": now_ms, "v": size, "c": None}
                prints.append(row)
            await self.send_trades(prints)

    # ---- REST ----------------------------------------------------------------------------

    def add_candles(
        self,
        symbol: str,
        resolution: str,
        rows: Iterable[tuple[int, Number, Number, Number, Number, Number]],
        *,
        market: str | None = None,
    ) -> None:
        """Store bars ``(t unix s, open, high, low, close, volume)`` served by the endpoint of
        ``market`` (default: by the symbol's form); other endpoints answer ``no_data``."""
        bars = self._candles.setdefault((market or market_of(symbol), symbol, resolution), {})
        for t, o, h, low, c, v in rows:
            bars[int(t)] = (_number(o), _number(h), _number(low), _number(c), _number(v))

    def rate_limit_next(self, n: int = 1) -> None:
        """Answer the next ``n`` REST calls with HTTP 429."""
        self._rate_limit_next = n

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path.startswith("/api/v1/") or parts.path == "/api/v1":
            return self._rest(connection, request, parts.path[len("/api/v1") :], parts.query)
        if _token_of(request) not in self.api_keys:
            self.rejected_handshakes += 1
            return _json(connection, 401, {"error": "Invalid API key"})
        return None

    def _rest(
        self, connection: ServerConnection, request: Request, path: str, query: str
    ) -> Response:
        params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
        key = request.headers.get("X-Finnhub-Token") or params.pop("token", "")
        params.pop("token", None)
        self.requests.append((path, params))
        self._touch()
        if key not in self.api_keys:
            return _json(connection, 401, {"error": "Invalid API key"})
        if self._rate_limit_next > 0:
            self._rate_limit_next -= 1
            return _json(connection, 429, {"error": _RATE_LIMITED})
        if self.calls_per_minute is not None:
            now = time.monotonic()
            calls = [t for t in self._calls.get(key, []) if now - t < 60]
            if len(calls) >= self.calls_per_minute:
                self._calls[key] = calls
                return _json(connection, 429, {"error": _RATE_LIMITED})
            calls.append(now)
            self._calls[key] = calls
        market = _MARKET_OF_PATH.get(path)
        if market is None:
            return _json(connection, 404, {"error": "Not found"})
        if not self.candle_access:
            return _json(connection, 403, {"error": _NO_ACCESS})
        try:
            symbol, resolution = params["symbol"], params["resolution"]
            first, last = int(params["from"]), int(params["to"])
        except (KeyError, ValueError):
            return _json(connection, 422, {"error": "Missing or invalid parameters"})
        if resolution not in _RESOLUTIONS:
            return _json(connection, 422, {"error": "Wrong resolution"})
        bars = self._candles.get((market, symbol, resolution), {})
        times = sorted(t for t in bars if first <= t <= last)
        if not times:
            return _json(connection, 200, {"s": "no_data"})
        cols: dict[str, Any] = {"c": [], "h": [], "l": [], "o": [], "s": "ok", "t": times, "v": []}
        for t in times:
            o, h, low, c, v = bars[t]
            cols["o"].append(o)
            cols["h"].append(h)
            cols["l"].append(low)
            cols["c"].append(c)
            cols["v"].append(v)
        return _json(connection, 200, cols)


def _token_of(request: Request) -> str:
    values = parse_qs(urlsplit(request.path).query).get("token")
    return values[-1] if values else ""


def _json(connection: ServerConnection, status: int, body: Any) -> Response:
    response = connection.respond(status, "")
    data = _encoder.encode(body)
    headers = Headers(
        [
            (k, v)
            for k, v in response.headers.raw_items()
            if k.lower() not in ("content-type", "content-length")
        ]
    )
    headers["Content-Type"] = "application/json; charset=utf-8"
    headers["Content-Length"] = str(len(data))
    return Response(response.status_code, response.reason_phrase, headers, data)


__all__ = ("FakeConnection", "FakeFinnhub", "market_of")
