"""A fake Coinbase Exchange on 127.0.0.1: the websocket feed and the REST history endpoints.

One :mod:`websockets` server answers both on the same port: websocket upgrades get the feed,
plain HTTP ``GET`` requests are answered from ``process_request`` with the REST endpoints, so
``ws_url`` and ``rest_url`` differ only in their scheme and no web framework is needed.

It speaks the protocol as ``shared/protocols/coinbase.md`` records it: a cumulative
``subscriptions`` ack; disconnect after ``subscribe_deadline`` seconds without a subscribe;
``heartbeat`` per product and interval; ``last_match`` then ``match``; one ``ticker`` per trade
(taker side, best bid/ask); ``level2_batch`` snapshot then ``l2update``; ``error`` frames for
invalid products, missing channels and ``level2`` without authentication. The REST side serves
``/products``, ``/products/{id}/candles`` (computed from the trade history, newest first, empty
buckets absent, HTTP 400 above 300 buckets) and ``/products/{id}/trades`` (newest first,
``CB-BEFORE``/``CB-AFTER`` cursors) from one deterministic history per product: synthetic trades
over the past ``history_days`` plus every trade published since.

It is asyncio-only (as :mod:`websockets` is); run it under anyio's asyncio backend.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import calendar
import contextlib
import email.utils
import hashlib
import hmac
import math
import random
import ssl
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

NS = 1_000_000_000
GRANULARITIES = (60, 300, 900, 3600, 21600, 86400)
MAX_BUCKETS = 300
AUTH_CHANNELS = frozenset({"level2", "full", "level3"})
SERVED_CHANNELS = frozenset({"matches", "ticker", "level2_batch", "level2", "heartbeat"})
ALIASES = {"level2_50": "level2_batch"}
LEVEL2_AUTH_REASON = (
    "level2, level3, and full channels now require authentication. "
    "https://docs.cloud.coinbase.com/exchange/docs/websocket-auth"
)
BASE_PRICES = {"BTC": "65000", "ETH": "3200", "SOL": "150", "LTC": "80", "DOGE": "0.15"}
BOOK_DEPTH = 10

_encode = msgspec.json.Encoder().encode
_encode_numbers = msgspec.json.Encoder(decimal_format="number").encode


def iso(ns: int) -> str:
    """Nanoseconds → ``2026-12-01T18:00:00.123456Z`` (microseconds, as Coinbase writes)."""
    seconds, rest = divmod(ns, NS)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + (
        f".{rest // 1000:06d}Z"
    )


def plain(value: Decimal) -> str:
    """A decimal as Coinbase writes it: plain digits, never an exponent."""
    return format(value, "f")


def _parse_when(text: str) -> int:
    """A REST ``start``/``end``: epoch seconds or ISO 8601 (``Z``, offset or naive UTC)."""
    try:
        return int(float(text) * NS)
    except ValueError:
        pass
    when = datetime.fromisoformat(text)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return calendar.timegm(when.utctimetuple()) * NS + when.microsecond * 1000


@dataclass(frozen=True, slots=True)
class FakeTrade:
    """One trade in a product's history; ``side`` is the taker's (the feed sends the maker's)."""

    trade_id: int
    ts: int
    price: Decimal
    size: Decimal
    side: Literal["buy", "sell"]

    @property
    def maker_side(self) -> str:
        return "sell" if self.side == "buy" else "buy"


@dataclass
class _Market:
    product: str
    tick: Decimal
    size_unit: Decimal
    price: Decimal
    rnd: random.Random
    trades: list[FakeTrade] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    sequence: int = 1_000_000
    withhold: int = 0
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)

    @property
    def last_trade_id(self) -> int:
        return self.trades[-1].trade_id if self.trades else 0

    def add(self, trade: FakeTrade) -> None:
        self.trades.append(trade)
        self.times.append(trade.ts)
        self.price = trade.price

    def rebook(self) -> list[list[str]]:
        """Re-center the book on the last price; return the l2update ``changes``."""
        old_bids, old_asks = self.bids, self.asks
        rnd = self.rnd
        best_bid = self.price - self.tick
        best_ask = self.price + self.tick
        self.bids = {
            best_bid - i * self.tick: self.size_unit * rnd.randint(1, 500)
            for i in range(BOOK_DEPTH)
            if best_bid - i * self.tick > 0
        }
        self.asks = {
            best_ask + i * self.tick: self.size_unit * rnd.randint(1, 500)
            for i in range(BOOK_DEPTH)
        }
        changes: list[list[str]] = []
        for side, old, new in (("buy", old_bids, self.bids), ("sell", old_asks, self.asks)):
            for price in old.keys() - new.keys():
                changes.append([side, plain(price), "0"])
            for price, size in new.items():
                if old.get(price) != size:
                    changes.append([side, plain(price), plain(size)])
        return changes

    def best(self) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        bid = max(self.bids)
        ask = min(self.asks)
        return bid, self.bids[bid], ask, self.asks[ask]


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    channels: dict[str, set[str]] = field(default_factory=dict)
    authenticated: bool = False
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    def wants(self, channel: str, product: str) -> bool:
        return product in self.channels.get(channel, ())


class FakeCoinbase:
    """A fake Coinbase Exchange (feed + REST) on 127.0.0.1, for tests and demos.

    ::

        async with FakeCoinbase(["BTC-USD", "ETH-USD"], seed=1) as fake:
            source = CoinbaseSettings(symbols=["BTC-USD"], ws_url=fake.ws_url,
                                      rest_url=fake.rest_url)
            await fake.trade("BTC-USD", "65000.01", "0.5", "buy")

    :param products: the products it lists (others are "not a valid product").
    :param seed: makes the synthetic history and the simulated market repeatable.
    :param port: 0 picks a free port.
    :param subscribe_deadline: seconds a client has to subscribe before it is disconnected.
    :param heartbeat_interval: seconds between two heartbeats of a product.
    :param history_days: days of synthetic trade history before start-up (REST).
    :param history_gap: mean seconds between two synthetic trades.
    :param any_product: also accept (and create) any ``BASE-QUOTE`` product on subscribe.
    :param credentials: ``(key, base64 secret, passphrase)`` it accepts for signed subscribes.
    :param now: nanoseconds at which the synthetic history ends (default: the clock).
    :param ssl_context: serve TLS (``wss://`` and ``https://``) with this server context.
    """

    def __init__(
        self,
        products: Sequence[str] = ("BTC-USD", "ETH-USD"),
        *,
        seed: int = 1,
        host: str = "127.0.0.1",
        port: int = 0,
        subscribe_deadline: float = 5.0,
        heartbeat_interval: float = 1.0,
        history_days: float = 31,
        history_gap: float = 300.0,
        any_product: bool = False,
        credentials: tuple[str, str, str] | None = None,
        now: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.ssl_context = ssl_context
        self.port = port
        self.seed = seed
        self.subscribe_deadline = subscribe_deadline
        self.heartbeat_interval = heartbeat_interval
        self.history_days = history_days
        self.history_gap = history_gap
        self.any_product = any_product
        self.credentials = credentials
        #: Every message clients sent, decoded (or the raw text when it is not JSON).
        self.received: list[Any] = []
        #: While True the feed sends nothing at all, heartbeats included.
        self.stalled = False
        #: REST requests answered, as ``(path, query)`` pairs.
        self.rest_requests: list[tuple[str, dict[str, str]]] = []
        self._now = now
        self._markets: dict[str, _Market] = {}
        self._clients: set[_Client] = set()
        self._reject = 0
        self._rate_limit = 0
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._simulation: asyncio.Task[None] | None = None
        for product in products:
            self._market(product)

    # ---- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            compression="deflate",
            max_size=2**20,
            ssl=self.ssl_context,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        self._spawn(self._heartbeats())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the simulation, close every connection and the server."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def ws_url(self) -> str:
        """The feed, for ``ws_url``."""
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        """The REST base, for ``rest_url``."""
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.port}"

    @property
    def products(self) -> list[str]:
        """The products it lists."""
        return list(self._markets)

    @property
    def connections(self) -> int:
        """How many feed connections are open."""
        return len(self._clients)

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ---- the market -----------------------------------------------------------------------

    def _clock(self) -> int:
        return time.time_ns()

    def _market(self, product: str) -> _Market:
        market = self._markets.get(product)
        if market is not None:
            return market
        base = product.split("-")[0]
        price = Decimal(BASE_PRICES.get(base, "100"))
        tick = Decimal("0.01") if price >= 1 else Decimal("0.00001")
        rnd = random.Random(f"{self.seed}:{product}")
        market = _Market(product, tick, Decimal("0.001"), price, rnd)
        market.sequence = rnd.randint(10**6, 10**9)
        self._history(market)
        market.rebook()
        self._markets[product] = market
        return market

    def _history(self, market: _Market) -> None:
        rnd = market.rnd
        end = self._now if self._now is not None else self._clock()
        ts = end - int(self.history_days * 86400 * NS)
        trade_id = rnd.randint(1_000, 1_000_000)
        price = float(market.price)
        step = 1 / self.history_gap
        while True:
            ts += max(1, int(rnd.expovariate(step) * NS))
            if ts >= end:
                break
            price *= math.exp(rnd.gauss(0, 0.002))
            value = Decimal(repr(price)).quantize(market.tick)
            if value <= 0:
                value = market.tick
            size = market.size_unit * rnd.randint(1, 2000)
            side: Literal["buy", "sell"] = "buy" if rnd.random() < 0.5 else "sell"
            market.add(FakeTrade(trade_id, ts // 1000 * 1000, value, size, side))
            trade_id += 1
        if not market.trades:
            market.price = Decimal(repr(price)).quantize(market.tick)

    def trades(self, product: str) -> list[FakeTrade]:
        """The whole trade history of ``product`` (REST truth), oldest first."""
        return list(self._markets[product].trades)

    def last_trade_id(self, product: str) -> int:
        """The id of the latest trade of ``product`` (what heartbeats report)."""
        return self._markets[product].last_trade_id

    def candle_rows(self, product: str, granularity: int, start: int, end: int) -> list[list[Any]]:
        """``[time, low, high, open, close, volume]`` rows for buckets starting in
        ``[start, end]`` (nanoseconds, both inclusive, as Coinbase answers), newest first."""
        market = self._markets[product]
        step = granularity * NS
        first = start // step * step
        lo = bisect.bisect_left(market.times, first)
        hi = bisect.bisect_left(market.times, end // step * step + step)
        buckets: dict[int, list[FakeTrade]] = {}
        for trade in market.trades[lo:hi]:
            buckets.setdefault(trade.ts // step * step, []).append(trade)
        rows = []
        for bucket in sorted(buckets, reverse=True):
            group = buckets[bucket]
            prices = [t.price for t in group]
            rows.append(
                [
                    bucket // NS,
                    min(prices),
                    max(prices),
                    group[0].price,
                    group[-1].price,
                    sum((t.size for t in group), Decimal(0)),
                ]
            )
        return rows

    async def trade(
        self,
        product: str,
        price: Decimal | str,
        size: Decimal | str,
        side: Literal["buy", "sell"] = "buy",
        *,
        ts: int | None = None,
    ) -> FakeTrade:
        """Publish one trade (``side`` = the taker's) on the feed and add it to the history.

        While trades are withheld for ``product`` they reach the history only.
        """
        market = self._markets[product]
        last = market.trades[-1].ts if market.trades else 0
        when = ts if ts is not None else max(self._clock() // 1000 * 1000, last + 1000)
        trade = FakeTrade(market.last_trade_id + 1, when, Decimal(price), Decimal(size), side)
        market.add(trade)
        market.sequence += 1
        changes = market.rebook()
        if market.withhold > 0:
            market.withhold -= 1
        else:
            match = {
                "type": "match",
                "trade_id": trade.trade_id,
                "maker_order_id": _uuid(market.rnd),
                "taker_order_id": _uuid(market.rnd),
                "side": trade.maker_side,
                "size": plain(trade.size),
                "price": plain(trade.price),
                "product_id": product,
                "sequence": market.sequence,
                "time": iso(trade.ts),
            }
            await self._publish("matches", product, _encode(match))
            await self._publish("ticker", product, _encode(self._ticker(market)))
        market.sequence += 1
        update = {
            "type": "l2update",
            "product_id": product,
            "changes": changes,
            "time": iso(trade.ts),
        }
        text = _encode(update)
        await self._publish("level2_batch", product, text)
        await self._publish("level2", product, text)
        return trade

    def _ticker(self, market: _Market) -> dict[str, Any]:
        bid, bid_size, ask, ask_size = market.best()
        if not market.trades:
            return {
                "type": "ticker",
                "product_id": market.product,
                "price": "0",
                "best_bid": plain(bid),
                "best_ask": plain(ask),
            }
        last = market.trades[-1]
        day = [t for t in market.trades[-2000:] if t.ts >= last.ts - 86400 * NS]
        return {
            "type": "ticker",
            "sequence": market.sequence,
            "product_id": market.product,
            "price": plain(last.price),
            "open_24h": plain(day[0].price),
            "volume_24h": plain(sum((t.size for t in day), Decimal(0))),
            "low_24h": plain(min(t.price for t in day)),
            "high_24h": plain(max(t.price for t in day)),
            "volume_30d": plain(sum((t.size for t in market.trades[-5000:]), Decimal(0))),
            "best_bid": plain(bid),
            "best_bid_size": plain(bid_size),
            "best_ask": plain(ask),
            "best_ask_size": plain(ask_size),
            "side": last.side,
            "time": iso(last.ts),
            "trade_id": last.trade_id,
            "last_size": plain(last.size),
        }

    def withhold_trades(self, product: str, n: int) -> None:
        """Leave the next ``n`` trades of ``product`` off the feed (they stay in REST history):
        a hole in the trade ids that heartbeats also reveal."""
        self._markets[product].withhold += n

    def simulate(self, rate_per_s: float = 10.0) -> None:
        """Start a simulated market: about ``rate_per_s`` trades a second over all products,
        a random walk repeatable by ``seed``. Calling it again changes the rate."""
        self.stop_simulation()
        self._simulation = self._spawn(self._simulate(rate_per_s))

    def stop_simulation(self) -> None:
        """Stop the simulated market."""
        if self._simulation is not None:
            self._simulation.cancel()
            self._simulation = None

    async def _simulate(self, rate_per_s: float) -> None:
        rnd = random.Random(self.seed)
        while True:
            await asyncio.sleep(1 / rate_per_s)
            if not self._markets:
                continue
            product = rnd.choice(sorted(self._markets))
            market = self._markets[product]
            ticks = rnd.choice((-2, -1, -1, 0, 1, 1, 2))
            price = max(market.tick, market.price + ticks * market.tick)
            size = market.size_unit * rnd.randint(1, 2000)
            side: Literal["buy", "sell"] = "buy" if ticks >= 0 else "sell"
            await self.trade(product, price, size, side)

    # ---- test controls --------------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Cut every feed connection abruptly (no close frame), as a network failure would."""
        for client in list(self._clients):
            client.ws.transport.abort()
        for _ in range(100):
            if not self._clients:
                break
            await asyncio.sleep(0.01)

    async def close_connections(self, code: int = 1000, reason: str = "") -> None:
        """Close every feed connection with a close frame (``code``, ``reason``)."""
        for client in list(self._clients):
            with contextlib.suppress(ConnectionClosed):
                await client.ws.close(code, reason)

    async def send_raw(self, text: str | bytes) -> None:
        """Send ``text`` as is to every open feed connection (malformed frames, say)."""
        for client in list(self._clients):
            with contextlib.suppress(ConnectionClosed):
                await client.ws.send(text)

    def reject_next_connections(self, n: int) -> None:
        """Answer the next ``n`` websocket handshakes with HTTP 503."""
        self._reject += n

    def rate_limit_next_rest(self, n: int) -> None:
        """Answer the next ``n`` REST requests with HTTP 429."""
        self._rate_limit += n

    async def wait_subscribed(self, n: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``n`` connections have subscribed."""
        async with asyncio.timeout(timeout):
            while sum(c.subscribed.is_set() for c in self._clients) < n:
                await asyncio.sleep(0.01)

    async def replay(self, path: str | Path, speed: float | None = None) -> int:
        """Play a recorded capture (the ``shared/data`` format) to every open connection.

        Sends each received message except ``subscriptions`` (this server sends its own acks),
        to the connections subscribed to its ``product_id`` on any channel. ``speed`` scales
        the recorded timing (2 = twice as fast); ``None`` sends as fast as possible. Returns
        how many messages were sent.
        """
        sent = 0
        previous: float | None = None
        for received_at, direction, text in read_capture(path):
            if direction != "in":
                continue
            message = msgspec.json.decode(text)
            if message.get("type") == "subscriptions":
                continue
            if speed is not None and previous is not None and received_at > previous:
                await asyncio.sleep((received_at - previous) / speed)
            previous = received_at
            product = message.get("product_id")
            for client in list(self._clients):
                if self.stalled:
                    continue
                if product is None or any(product in p for p in client.channels.values()):
                    with contextlib.suppress(ConnectionClosed):
                        await client.ws.send(text)
                        sent += 1
        return sent

    # ---- the feed -------------------------------------------------------------------------

    async def _publish(self, channel: str, product: str, text: str | bytes) -> None:
        if self.stalled:
            return
        for client in list(self._clients):
            if client.wants(channel, product):
                with contextlib.suppress(ConnectionClosed):
                    await client.ws.send(text.decode() if isinstance(text, bytes) else text)

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            now = iso(self._clock())
            for product, market in list(self._markets.items()):
                beat = {
                    "type": "heartbeat",
                    "last_trade_id": market.last_trade_id,
                    "product_id": product,
                    "sequence": market.sequence,
                    "time": now,
                }
                await self._publish("heartbeat", product, _encode(beat))

    async def _handle(self, ws: ServerConnection) -> None:
        client = _Client(ws)
        self._clients.add(client)
        deadline = self._spawn(self._enforce_deadline(client))
        try:
            async for text in ws:
                try:
                    message = msgspec.json.decode(text)
                except msgspec.DecodeError:
                    self.received.append(text)
                    await self._send(client, {"type": "error", "message": "Malformed JSON"})
                    continue
                self.received.append(message)
                await self._on_message(client, message)
        except ConnectionClosed:
            pass
        finally:
            deadline.cancel()
            self._clients.discard(client)

    async def _enforce_deadline(self, client: _Client) -> None:
        try:
            async with asyncio.timeout(self.subscribe_deadline):
                await client.subscribed.wait()
        except TimeoutError:
            await client.ws.close(1008, "no subscribe within the deadline")

    async def _send(self, client: _Client, message: dict[str, Any]) -> None:
        if not self.stalled:
            with contextlib.suppress(ConnectionClosed):
                await client.ws.send(_encode(message).decode())

    async def _error(self, client: _Client, reason: str | None, message: str = "") -> None:
        error: dict[str, Any] = {"type": "error", "message": message or "Failed to subscribe"}
        if reason is not None:
            error["reason"] = reason
        await self._send(client, error)

    async def _on_message(self, client: _Client, message: Any) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if kind not in ("subscribe", "unsubscribe"):
            await self._error(client, "Type has to be either subscribe or unsubscribe")
            return
        if any(k in message for k in ("signature", "key", "passphrase", "timestamp")):
            if not isinstance(message.get("timestamp"), str):
                await self._error(client, None, "invalid (un)subscribe msg")
                return
            if not self._verify(message):
                await self._error(
                    client,
                    "invalid signature",
                    "Sorry, you could not be authenticated: Bad Request",
                )
                return
            client.authenticated = True
        root = message.get("product_ids") or []
        channels = message.get("channels") or []
        if not isinstance(root, list) or not isinstance(channels, list):
            await self._error(client, None, "invalid (un)subscribe msg")
            return
        if not channels:
            await self._error(client, "No channels provided")
            return
        added: list[tuple[str, str]] = []
        invalid: set[str] = set()
        for item in channels:
            if isinstance(item, str):
                name, products = item, root
            elif isinstance(item, dict) and isinstance(item.get("name"), str):
                name, products = item["name"], item.get("product_ids") or []
                if not products:
                    # what Coinbase does with an object channel without products
                    await self._error(client, " is not a valid product")
                    continue
            else:
                await self._error(client, None, "invalid (un)subscribe msg")
                return
            name = ALIASES.get(name, name)
            if name in AUTH_CHANNELS and not client.authenticated:
                await self._error(client, LEVEL2_AUTH_REASON)
                continue
            if name not in SERVED_CHANNELS:
                await self._error(client, f"{name} is not a valid channel")
                continue
            for product in products:
                if not self._valid_product(product):
                    if repr(product) not in invalid:  # one error per product and message
                        invalid.add(repr(product))
                        await self._error(client, f"{product} is not a valid product")
                    continue
                subscribed = client.channels.setdefault(name, set())
                if kind == "subscribe":
                    if product not in subscribed:
                        subscribed.add(product)
                        added.append((name, product))
                else:
                    subscribed.discard(product)
        client.channels = {name: ps for name, ps in client.channels.items() if ps}
        await self._send(
            client,
            {
                "type": "subscriptions",
                "channels": [
                    {"name": name, "product_ids": sorted(ps)}
                    for name, ps in client.channels.items()
                ],
            },
        )
        if kind == "subscribe":
            client.subscribed.set()
            for name, product in added:
                await self._initial(client, name, product)

    def _valid_product(self, product: Any) -> bool:
        if not isinstance(product, str):
            return False
        if product in self._markets:
            return True
        parts = product.split("-")
        if self.any_product and len(parts) == 2 and all(p.isalnum() and p.isupper() for p in parts):
            self._market(product)
            return True
        return False

    async def _initial(self, client: _Client, channel: str, product: str) -> None:
        market = self._markets[product]
        if channel == "matches" and market.trades:
            last = market.trades[-1]
            await self._send(
                client,
                {
                    "type": "last_match",
                    "trade_id": last.trade_id,
                    "maker_order_id": _uuid(market.rnd),
                    "taker_order_id": _uuid(market.rnd),
                    "side": last.maker_side,
                    "size": plain(last.size),
                    "price": plain(last.price),
                    "product_id": product,
                    "sequence": market.sequence,
                    "time": iso(last.ts),
                },
            )
        elif channel == "ticker":
            await self._send(client, self._ticker(market))
        elif channel in ("level2_batch", "level2"):
            await self._send(
                client,
                {
                    "type": "snapshot",
                    "product_id": product,
                    "bids": [
                        [plain(p), plain(s)] for p, s in sorted(market.bids.items(), reverse=True)
                    ],
                    "asks": [[plain(p), plain(s)] for p, s in sorted(market.asks.items())],
                },
            )

    def _verify(self, message: dict[str, Any]) -> bool:
        if self.credentials is None:
            return False
        key, secret, passphrase = self.credentials
        timestamp = message["timestamp"]
        expected = base64.b64encode(
            hmac.new(
                base64.b64decode(secret),
                (timestamp + "GET/users/self/verify").encode(),
                hashlib.sha256,
            ).digest()
        ).decode()
        try:
            fresh = abs(float(timestamp) - time.time()) <= 30
        except ValueError:
            return False
        return (
            fresh
            and message.get("key") == key
            and message.get("passphrase") == passphrase
            and hmac.compare_digest(str(message.get("signature", "")), expected)
        )

    # ---- REST -----------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Upgrade", "").lower() == "websocket":
            if self._reject > 0:
                self._reject -= 1
                return connection.respond(503, "Service Unavailable\n")
            return None
        url = urlsplit(request.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self.rest_requests.append((url.path, query))
        if self._rate_limit > 0:
            self._rate_limit -= 1
            return _json(429, {"message": "Public rate limit exceeded"})
        parts = url.path.strip("/").split("/")
        if parts == ["products"]:
            return _json(200, [self._product_info(p) for p in self._markets])
        if len(parts) != 3 or parts[0] != "products":
            return _json(404, {"message": "NotFound"})
        product, resource = parts[1], parts[2]
        if product not in self._markets:
            return _json(404, {"message": "NotFound"})
        try:
            if resource == "candles":
                return self._rest_candles(product, query)
            if resource == "trades":
                return self._rest_trades(product, query)
        except ValueError as exc:
            return _json(400, {"message": str(exc)})
        return _json(404, {"message": "NotFound"})

    def _product_info(self, product: str) -> dict[str, Any]:
        base, _, quote = product.partition("-")
        market = self._markets[product]
        return {
            "id": product,
            "base_currency": base,
            "quote_currency": quote,
            "quote_increment": plain(market.tick),
            "base_increment": plain(market.size_unit),
            "display_name": product.replace("-", "/"),
            "status": "online",
        }

    def _rest_candles(self, product: str, query: dict[str, str]) -> Response:
        granularity = int(query.get("granularity", "60"))
        if granularity not in GRANULARITIES:
            raise ValueError("Unsupported granularity")
        if "start" in query and "end" in query:
            start, end = _parse_when(query["start"]), _parse_when(query["end"])
        else:
            end = self._clock()
            start = end - MAX_BUCKETS * granularity * NS
        if end < start:
            raise ValueError("start must be before end")
        if (end - start) // (granularity * NS) > MAX_BUCKETS:
            raise ValueError(
                "granularity too small for the requested time range. "
                "Count of aggregations requested exceeds 300"
            )
        rows = self.candle_rows(product, granularity, start, end)
        return _json(200, rows, numbers=True)

    def _rest_trades(self, product: str, query: dict[str, str]) -> Response:
        limit = int(query.get("limit", "1000"))
        if not 1 <= limit <= 1000:
            raise ValueError("limit must be between 1 and 1000")
        trades = self._markets[product].trades
        ids = [t.trade_id for t in trades]  # ascending
        if "after" in query:
            hi = bisect.bisect_left(ids, int(query["after"]))
            page = trades[max(0, hi - limit) : hi]
        elif "before" in query:
            lo = bisect.bisect_right(ids, int(query["before"]))
            page = trades[lo : lo + limit]
        else:
            page = trades[-limit:]
        page = page[::-1]
        body = [
            {
                "time": iso(t.ts),
                "trade_id": t.trade_id,
                "price": plain(t.price),
                "size": plain(t.size),
                "side": t.maker_side,
            }
            for t in page
        ]
        headers = {}
        if page:
            headers = {"CB-BEFORE": str(page[0].trade_id), "CB-AFTER": str(page[-1].trade_id)}
        return _json(200, body, headers=headers)


def _json(
    status: int, body: Any, *, headers: dict[str, str] | None = None, numbers: bool = False
) -> Response:
    data = (_encode_numbers if numbers else _encode)(body)
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}
    all_headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Type", "application/json; charset=utf-8"),
            ("Content-Length", str(len(data))),
        ]
    )
    for name, value in (headers or {}).items():
        all_headers[name] = value
    return Response(status, reasons.get(status, "Error"), all_headers, data)


def _uuid(rnd: random.Random) -> str:
    h = f"{rnd.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def read_capture(path: str | Path) -> Iterator[tuple[float, Literal["open", "out", "in"], str]]:
    """Read a capture in the ``shared/data`` format: ``(unix time, direction, text)``.

    ``open`` is a connection opening (text = the URL), ``out`` a message the client sent,
    ``in`` a message it received.
    """
    with open(path, encoding="utf-8") as lines:
        for number, raw in enumerate(lines, 1):
            line = raw.rstrip("\n")
            if not line:
                continue
            if line.startswith(("wss://", "ws://")):
                url, _, rest = line.partition(" ")
                if rest.startswith("<-> "):
                    yield float(rest[4:]), "open", url
                elif rest.startswith("<- "):
                    stamp, _, text = rest[3:].partition(": ")
                    yield float(stamp), "out", text
                else:
                    raise ValueError(f"{path}:{number}: unreadable line")
                continue
            stamp, sep, text = line.partition(": ")
            if not sep:
                raise ValueError(f"{path}:{number}: unreadable line")
            yield float(stamp), "in", text


__all__ = ("FakeCoinbase", "FakeTrade", "iso", "plain", "read_capture")
