"""A protocol-faithful fake of Binance spot's public websocket and REST API, as ccxt.pro speaks it.

One aiohttp server on 127.0.0.1 serves both:

* websocket ``/stream/ws/<index>`` (ccxt's binance client dials ``<urls.api.ws.spot>/<index>``
  and decides spot-vs-contract from ``/stream`` in the URL): ``SUBSCRIBE`` / ``UNSUBSCRIBE``
  requests answered with ``{"result": null, "id": N}``; raw (uncombined) ``trade``,
  ``aggTrade``, ``kline_<interval>``, ``depth@100ms`` (and ``depth``) and ``ticker`` streams;
* REST under ``/api/v3``: ``exchangeInfo``, ``depth``, ``klines``, ``aggTrades``, ``trades``,
  ``time`` and ``ping``, with Binance's paging limits (``limit`` at most ``max_rows``, the
  one-hour window of ``aggTrades``) and, on request, ``429`` answers with ``Retry-After``.

A simulated market keeps trades, a book and a ticker moving for every symbol; every trade ever
made is kept on the tape, which REST ``aggTrades`` pages through, so a hole in the stream
(:meth:`FakeBinance.hole`, :meth:`FakeBinance.drop_connections`) can be backfilled. Each
aggregate trade of this fake is one trade (``a == f == l == t``). REST klines are a
deterministic function of the bucket start (:meth:`FakeBinance.kline_row`), reaching
``history_days`` back, so a backfill can be checked bucket by bucket.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any

from aiohttp import WSMsgType, web

INTERVAL_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
}
TICK_S = 0.1
BOOK_LEVELS = 20
_TWO = Decimal("0.01")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


@dataclass
class TapeTrade:
    """One trade on the fake's tape (what REST returns and what the stream sent or skipped)."""

    id: int
    ts: int
    price: str
    qty: str
    buyer_maker: bool
    sent: bool = True


@dataclass
class _Kline:
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trades: int


@dataclass
class Market:
    """One simulated spot market."""

    symbol: str
    id: str
    base: str
    quote: str
    rng: random.Random
    price: Decimal = Decimal("30000.00")
    next_id: int = 1_000_000
    tape: list[TapeTrade] = field(default_factory=list)
    tape_ts: list[int] = field(default_factory=list)
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)
    update_id: int = 1000
    klines: dict[str, _Kline] = field(default_factory=dict)
    carry: float = 0.0
    withhold_diffs: int = 0
    history: dict[int, tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]] = field(
        default_factory=dict
    )

    def remember_book(self) -> None:
        """Keep the book as it is at ``update_id`` (the last 2000 states)."""
        self.history[self.update_id] = (
            sorted(self.bids.items(), reverse=True),
            sorted(self.asks.items()),
        )
        if len(self.history) > 2000:
            del self.history[min(self.history)]

    def make_trade(self, ts: int) -> TapeTrade:
        """Make (and keep on the tape) the next trade of this market."""
        if self.tape_ts and ts < self.tape_ts[-1]:
            ts = self.tape_ts[-1]
        step = Decimal(self.rng.randint(-3, 3)) * _TWO
        self.price = max(Decimal("1.00"), self.price + step)
        qty = Decimal(self.rng.randint(1, 5000)) / Decimal(100000)
        trade = TapeTrade(
            id=self.next_id,
            ts=ts,
            price=f"{self.price:.2f}",
            qty=f"{qty:.8f}",
            buyer_maker=self.rng.random() < 0.5,
        )
        self.next_id += 1
        self.tape.append(trade)
        self.tape_ts.append(ts)
        return trade

    def init_book(self) -> None:
        mid = self.price
        for i in range(1, BOOK_LEVELS + 1):
            self.bids[mid - i * _TWO] = Decimal(self.rng.randint(1, 900)) / 100
            self.asks[mid + i * _TWO] = Decimal(self.rng.randint(1, 900)) / 100

    def book_diff(self) -> tuple[list[list[str]], list[list[str]]]:
        """Change a few levels (sometimes removing one); return the changed levels."""
        bids: list[list[str]] = []
        asks: list[list[str]] = []
        for _ in range(self.rng.randint(1, 4)):
            side_is_bid = self.rng.random() < 0.5
            book = self.bids if side_is_bid else self.asks
            offset = Decimal(self.rng.randint(1, BOOK_LEVELS + 5)) * _TWO
            price = Decimal("30000.00") - offset if side_is_bid else Decimal("30000.00") + offset
            if price in book and self.rng.random() < 0.3:
                del book[price]
                qty = Decimal(0)
            else:
                qty = Decimal(self.rng.randint(1, 900)) / 100
                book[price] = qty
            row = [f"{price:.2f}", f"{qty:.8f}"]
            (bids if side_is_bid else asks).append(row)
        return bids, asks

    def best(self) -> tuple[tuple[Decimal, Decimal] | None, tuple[Decimal, Decimal] | None]:
        bid = max(self.bids.items()) if self.bids else None
        ask = min(self.asks.items()) if self.asks else None
        return bid, ask


class _Client:
    __slots__ = ("index", "request", "streams", "ws")

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, index: str) -> None:
        self.ws = ws
        self.request = request
        self.index = index
        self.streams: set[str] = set()


class FakeBinance:
    """A fake Binance spot exchange for the real ``ccxt.pro.binance`` client.

    :param symbols: unified symbols to list (``BASE/QUOTE``).
    :param rate_per_s: simulated trades per second per symbol (0: only what tests make).
    :param max_rows: the most rows one REST page returns (Binance: 1000).
    :param history_days: how far back REST klines reach.
    :param seed: seeds the simulated market.
    """

    def __init__(
        self,
        symbols: Sequence[str] = ("BTC/USDT", "ETH/USDT"),
        *,
        rate_per_s: float = 50.0,
        max_rows: int = 1000,
        history_days: float = 35,
        seed: int = 7,
    ) -> None:
        self.markets: dict[str, Market] = {}
        for symbol in symbols:
            base, quote = symbol.split("/")
            market = Market(symbol, base + quote, base, quote, random.Random(f"{seed}:{symbol}"))
            market.init_book()
            market.remember_book()
            self.markets[market.id] = market
        self.rate_per_s = rate_per_s
        self.max_rows = max_rows
        self.history_days = history_days
        self.paused = False
        self.clients: set[_Client] = set()
        self.connections_total = 0
        self.subscriptions: list[tuple[str, str, tuple[str, ...]]] = []
        self.rest_calls: dict[str, int] = {}
        self.empty_minutes: set[int] = set()
        self._rate_limited = 0
        self._retry_after = 1
        self._runner: web.AppRunner | None = None
        self._task: asyncio.Task[None] | None = None
        self.port = 0

    # ---- lifecycle ------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        """The websocket base ccxt's ``urls['api']['ws']['spot']`` should be."""
        return f"ws://127.0.0.1:{self.port}/stream/ws"

    @property
    def rest_url(self) -> str:
        """The REST base (Binance's documented paths such as ``/api/v3/klines`` follow it)."""
        return f"http://127.0.0.1:{self.port}"

    def source(self, **extra: Any) -> dict[str, Any]:
        """A ``[[sources]]`` table pointing at this fake."""
        table: dict[str, Any] = {
            "provider": "ccxt:binance",
            "symbols": [m.symbol for m in self.markets.values()],
            "ws_url": self.ws_url,
            "rest_url": self.rest_url,
        }
        table.update(extra)
        return table

    async def __aenter__(self) -> FakeBinance:
        app = web.Application()
        app.router.add_get("/stream/ws/{index}", self._ws_handler)
        app.router.add_get("/stream/ws", self._ws_handler)
        app.router.add_get("/api/v3/{name:.*}", self._rest_handler)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self._task = asyncio.get_running_loop().create_task(self._simulate())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in list(self.clients):
            with contextlib.suppress(Exception):
                await client.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ---- test controls ----------------------------------------------------------------------

    async def drop_connections(self) -> None:
        """Abort every websocket connection (TCP reset; ccxt sees closing code 1006)."""
        for client in list(self.clients):
            transport = client.request.transport
            if transport is not None:
                transport.abort()
            self.clients.discard(client)

    async def send_raw(self, frame: str) -> None:
        """Send ``frame`` as-is to every connected client."""
        for client in list(self.clients):
            with contextlib.suppress(Exception):
                await client.ws.send_str(frame)

    def hole(self, symbol: str, n: int) -> list[TapeTrade]:
        """Make ``n`` trades that go on the tape but are never streamed (an id hole)."""
        market = self._market(symbol)
        made = []
        for _ in range(n):
            trade = market.make_trade(_now_ms())
            trade.sent = False
            made.append(trade)
        return made

    async def burst(self, symbol: str, n: int) -> list[TapeTrade]:
        """Make ``n`` trades and stream them as fast as the sockets take them."""
        market = self._market(symbol)
        now = _now_ms()
        trades = [market.make_trade(now + i // 1000) for i in range(n)]
        targets = [c for c in self.clients if self._trade_streams(market) & c.streams]
        for client in targets:
            wanted = self._trade_streams(market) & client.streams
            for stream in wanted:
                kind = "aggTrade" if stream.endswith("@aggTrade") else "trade"
                frames = [_dumps(self._trade_payload(market, t, kind)) for t in trades]
                for frame in frames:
                    await client.ws.send_str(frame)
        return trades

    async def subscribed(self, stream: str, count: int = 1, timeout: float = 30) -> None:
        """Wait until ``count`` SUBSCRIBE requests for ``stream`` came and one is live."""
        deadline = time.monotonic() + timeout
        while sum(
            stream in p for _, m, p in self.subscriptions if m == "SUBSCRIBE"
        ) < count or not any(stream in c.streams for c in self.clients):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no SUBSCRIBE for {stream} within {timeout} s")
            await asyncio.sleep(0.02)

    def withhold_next_diff(self, symbol: str) -> None:
        """Apply the next depth diff of ``symbol`` to the book but do not send it."""
        self._market(symbol).withhold_diffs += 1

    def rate_limit(self, n: int, retry_after: int = 1) -> None:
        """Answer the next ``n`` REST requests with 429 Too Many Requests."""
        self._rate_limited = n
        self._retry_after = retry_after

    def book(
        self, symbol: str
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The fake's own book: bids best first, asks best first."""
        market = self._market(symbol)
        bids = sorted(market.bids.items(), reverse=True)
        asks = sorted(market.asks.items())
        return bids, asks

    def book_at(
        self, symbol: str, update_id: int
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]] | None:
        """The fake's book right after update ``update_id`` (``None``: too old or unknown)."""
        return self._market(symbol).history.get(update_id)

    def tape(self, symbol: str) -> list[TapeTrade]:
        """Every trade of ``symbol`` so far, in id order."""
        return list(self._market(symbol).tape)

    def kline_row(self, interval: str, start: int) -> list[Any] | None:
        """The REST kline of the bucket opening at ``start`` ms (``None``: no trades then)."""
        step = INTERVAL_MS[interval]
        if interval == "1m" and start // 60_000 in self.empty_minutes:
            return None
        i = start // step
        base = Decimal(20000 + (i * 7919) % 5000) / 100
        close = base + Decimal((i * 31) % 200 - 100) / 100
        high = max(base, close) + Decimal(i % 7) / 100
        low = min(base, close) - Decimal(i % 5) / 100
        volume = Decimal((i * 13) % 1000 + 1) / 1000
        return [
            start,
            f"{base:.2f}",
            f"{high:.2f}",
            f"{low:.2f}",
            f"{close:.2f}",
            f"{volume:.8f}",
            start + step - 1,
            f"{volume * base:.8f}",
            int(i % 50 + 1),
            "0",
            "0",
            "0",
        ]

    # ---- internals ----------------------------------------------------------------------------

    def _market(self, symbol: str) -> Market:
        key = symbol.replace("/", "").upper()
        return self.markets[key]

    def _trade_streams(self, market: Market) -> set[str]:
        low = market.id.lower()
        return {f"{low}@trade", f"{low}@aggTrade"}

    def _trade_payload(self, market: Market, t: TapeTrade, kind: str) -> dict[str, Any]:
        if kind == "aggTrade":
            return {
                "e": "aggTrade",
                "E": t.ts,
                "s": market.id,
                "a": t.id,
                "p": t.price,
                "q": t.qty,
                "f": t.id,
                "l": t.id,
                "T": t.ts,
                "m": t.buyer_maker,
                "M": True,
            }
        return {
            "e": "trade",
            "E": t.ts,
            "s": market.id,
            "t": t.id,
            "p": t.price,
            "q": t.qty,
            "T": t.ts,
            "m": t.buyer_maker,
            "M": True,
        }

    async def _publish(self, stream: str, payload: dict[str, Any]) -> None:
        frame: str | None = None
        for client in list(self.clients):
            if stream in client.streams:
                frame = frame or _dumps(payload)
                try:
                    await client.ws.send_str(frame)
                except Exception:
                    self.clients.discard(client)

    async def _emit_trade(self, market: Market, trade: TapeTrade) -> None:
        low = market.id.lower()
        await self._publish(f"{low}@trade", self._trade_payload(market, trade, "trade"))
        await self._publish(f"{low}@aggTrade", self._trade_payload(market, trade, "aggTrade"))
        for interval, step in INTERVAL_MS.items():
            stream = f"{low}@kline_{interval}"
            if not any(stream in c.streams for c in self.clients):
                continue
            start = trade.ts - trade.ts % step
            price, qty = Decimal(trade.price), Decimal(trade.qty)
            k = market.klines.get(interval)
            if k is not None and k.start < start:
                await self._publish(stream, self._kline_payload(market, interval, k, True))
                k = None
            if k is None:
                k = _Kline(start, price, price, price, price, Decimal(0), 0)
                market.klines[interval] = k
            k.high, k.low, k.close = max(k.high, price), min(k.low, price), price
            k.volume += qty
            k.trades += 1
            await self._publish(stream, self._kline_payload(market, interval, k, False))

    def _kline_payload(
        self, market: Market, interval: str, k: _Kline, closed: bool
    ) -> dict[str, Any]:
        step = INTERVAL_MS[interval]
        return {
            "e": "kline",
            "E": _now_ms(),
            "s": market.id,
            "k": {
                "t": k.start,
                "T": k.start + step - 1,
                "s": market.id,
                "i": interval,
                "f": 0,
                "L": 0,
                "o": f"{k.open:.2f}",
                "c": f"{k.close:.2f}",
                "h": f"{k.high:.2f}",
                "l": f"{k.low:.2f}",
                "v": f"{k.volume:.8f}",
                "n": k.trades,
                "x": closed,
                "q": "0",
                "V": "0",
                "Q": "0",
                "B": "0",
            },
        }

    async def _simulate(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            if self.paused:
                continue
            for market in list(self.markets.values()):
                market.carry += self.rate_per_s * TICK_S
                n, market.carry = int(market.carry), market.carry - int(market.carry)
                now = _now_ms()
                for _ in range(n):
                    await self._emit_trade(market, market.make_trade(now))
                await self._tick_book(market, now)

    async def _tick_book(self, market: Market, now: int) -> None:
        low = market.id.lower()
        bids, asks = market.book_diff()
        first = market.update_id + 1
        market.update_id += len(bids) + len(asks)
        market.remember_book()
        diff = {
            "e": "depthUpdate",
            "E": now,
            "s": market.id,
            "U": first,
            "u": market.update_id,
            "b": bids,
            "a": asks,
        }
        if market.withhold_diffs:
            market.withhold_diffs -= 1
        else:
            await self._publish(f"{low}@depth@100ms", diff)
            await self._publish(f"{low}@depth", diff)
        stream = f"{low}@ticker"
        if any(stream in c.streams for c in self.clients):
            bid, ask = market.best()
            last = market.tape[-1].price if market.tape else f"{market.price:.2f}"
            await self._publish(
                stream,
                {
                    "e": "24hrTicker",
                    "E": now,
                    "s": market.id,
                    "p": "0",
                    "P": "0",
                    "w": last,
                    "x": last,
                    "c": last,
                    "Q": "0",
                    "b": f"{bid[0]:.2f}" if bid else "0",
                    "B": f"{bid[1]:.8f}" if bid else "0",
                    "a": f"{ask[0]:.2f}" if ask else "0",
                    "A": f"{ask[1]:.8f}" if ask else "0",
                    "o": last,
                    "h": last,
                    "l": last,
                    "v": "0",
                    "q": "0",
                    "O": now - 86_400_000,
                    "C": now,
                    "F": 0,
                    "L": 0,
                    "n": len(market.tape),
                },
            )

    # ---- websocket ------------------------------------------------------------------------------

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(compress=False, autoping=True, max_msg_size=1 << 20)
        await ws.prepare(request)
        client = _Client(ws, request, request.match_info.get("index", ""))
        self.clients.add(client)
        self.connections_total += 1
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                await self._ws_request(client, msg.data)
        finally:
            self.clients.discard(client)
        return ws

    async def _ws_request(self, client: _Client, text: str) -> None:
        try:
            req = json.loads(text)
            method, req_id = req["method"], req.get("id")
        except (ValueError, KeyError, TypeError):
            await client.ws.send_str(_dumps({"error": {"code": 3, "msg": "Invalid JSON"}}))
            return
        params = tuple(req.get("params") or ())
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            for stream in params:
                symbol_id = str(stream).split("@", 1)[0].upper()
                if symbol_id not in self.markets:
                    await client.ws.send_str(
                        _dumps(
                            {
                                "error": {"code": 2, "msg": f"Invalid request: {stream}"},
                                "id": req_id,
                            }
                        )
                    )
                    return
            self.subscriptions.append((client.index, method, params))
            if method == "SUBSCRIBE":
                client.streams.update(params)
            else:
                client.streams.difference_update(params)
            await client.ws.send_str(_dumps({"result": None, "id": req_id}))
        elif method == "LIST_SUBSCRIPTIONS":
            await client.ws.send_str(_dumps({"result": sorted(client.streams), "id": req_id}))
        else:
            await client.ws.send_str(
                _dumps({"error": {"code": 2, "msg": f"Unknown method {method}"}, "id": req_id})
            )

    # ---- REST ---------------------------------------------------------------------------

    async def _rest_handler(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.rest_calls[name] = self.rest_calls.get(name, 0) + 1
        if self._rate_limited:
            self._rate_limited -= 1
            return web.json_response(
                {"code": -1003, "msg": "Too many requests; current limit is 6000 per minute."},
                status=429,
                headers={"Retry-After": str(self._retry_after)},
            )
        q = request.query
        try:
            if name == "ping":
                return web.json_response({})
            if name == "time":
                return web.json_response({"serverTime": _now_ms()})
            if name == "exchangeInfo":
                return web.json_response(self._exchange_info())
            market = self.markets.get(q.get("symbol", ""))
            if market is None:
                return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
            limit = int(q.get("limit", "500"))
            if limit < 1 or limit > self.max_rows:
                return web.json_response(
                    {
                        "code": -1100,
                        "msg": "Illegal characters found in parameter 'limit'; "
                        f"legal range is '1 - {self.max_rows}'.",
                    },
                    status=400,
                )
            if name == "depth":
                bids, asks = self.book(market.symbol)
                return web.json_response(
                    {
                        "lastUpdateId": market.update_id,
                        "bids": [[f"{p:.2f}", f"{s:.8f}"] for p, s in bids[:limit]],
                        "asks": [[f"{p:.2f}", f"{s:.8f}"] for p, s in asks[:limit]],
                    }
                )
            if name == "klines":
                return web.json_response(self._klines(q, limit))
            if name == "aggTrades":
                return self._agg_trades(market, q, limit)
            if name == "trades":
                rows = market.tape[-limit:]
                return web.json_response(
                    [
                        {
                            "id": t.id,
                            "price": t.price,
                            "qty": t.qty,
                            "quoteQty": "0",
                            "time": t.ts,
                            "isBuyerMaker": t.buyer_maker,
                            "isBestMatch": True,
                        }
                        for t in rows
                    ]
                )
        except (ValueError, KeyError) as exc:
            return web.json_response({"code": -1102, "msg": f"Bad parameter: {exc}"}, status=400)
        return web.json_response({"code": -1000, "msg": "Unknown endpoint"}, status=404)

    def _exchange_info(self) -> dict[str, Any]:
        symbols = []
        for m in self.markets.values():
            symbols.append(
                {
                    "symbol": m.id,
                    "status": "TRADING",
                    "baseAsset": m.base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": m.quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "MARKET"],
                    "icebergAllowed": True,
                    "ocoAllowed": True,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": "0.01000000",
                            "maxPrice": "1000000.00000000",
                            "tickSize": "0.01000000",
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": "0.00001000",
                            "maxQty": "9000.00000000",
                            "stepSize": "0.00001000",
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": ["EXPIRE_MAKER"],
                }
            )
        return {
            "timezone": "UTC",
            "serverTime": _now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                }
            ],
            "exchangeFilters": [],
            "symbols": symbols,
        }

    def _klines(self, q: Any, limit: int) -> list[list[Any]]:
        interval = q["interval"]
        step = INTERVAL_MS[interval]
        now = _now_ms()
        oldest = now - int(self.history_days * 86_400_000)
        oldest -= oldest % step
        start = int(q.get("startTime", now - step * limit))
        end = int(q.get("endTime", now))
        start = max(start, oldest)
        bucket = start - start % step
        if bucket < start:
            bucket += step
        rows: list[list[Any]] = []
        while bucket <= min(end, now) and len(rows) < limit:
            row = self.kline_row(interval, bucket)
            if row is not None:
                rows.append(row)
            bucket += step
        return rows

    def _agg_trades(self, market: Market, q: Any, limit: int) -> web.Response:
        if "fromId" in q:
            if "startTime" in q or "endTime" in q:
                return web.json_response(
                    {"code": -1128, "msg": "Combination of optional parameters invalid."},
                    status=400,
                )
            first = int(q["fromId"])
            index = bisect.bisect_left([t.id for t in market.tape], first)
        elif "startTime" in q:
            start, end = int(q["startTime"]), int(q.get("endTime", int(q["startTime"]) + 3_600_000))
            if end - start > 3_600_000:
                return web.json_response(
                    {"code": -1127, "msg": "More than 1 hours between startTime and endTime."},
                    status=400,
                )
            index = bisect.bisect_left(market.tape_ts, start)
            rows: list[TapeTrade] = []
            for t in market.tape[index:]:
                if t.ts > end or len(rows) >= limit:
                    break
                rows.append(t)
            return web.json_response([self._agg_row(t) for t in rows])
        else:
            index = max(0, len(market.tape) - limit)
        return web.json_response([self._agg_row(t) for t in market.tape[index : index + limit]])

    @staticmethod
    def _agg_row(t: TapeTrade) -> dict[str, Any]:
        return {
            "a": t.id,
            "p": t.price,
            "q": t.qty,
            "f": t.id,
            "l": t.id,
            "T": t.ts,
            "m": t.buyer_maker,
            "M": True,
        }


def contiguous(ids: Iterable[int]) -> bool:
    """Whether ``ids`` (sorted) go up by exactly one each."""
    prev: int | None = None
    for i in ids:
        if prev is not None and i != prev + 1:
            return False
        prev = i
    return True


__all__ = ("INTERVAL_MS", "FakeBinance", "Market", "TapeTrade", "contiguous")
