"""A small provider used by core's own tests, with its fake server: the shape of a real plugin.

Wire protocol (JSON text frames):
client -> server ``{"op": "subscribe", "symbols": [...]}``;
server -> client ``{"type": "trade", "s": sym, "p": "1.5", "q": "2", "t": ns, "id": n,
"side": "buy"}``, ``{"type": "ping"}``, ``{"type": "error", "symbol": sym, "msg": text}``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from decimal import Decimal
from typing import Any

import anyio
import msgspec
import websockets
from pydantic_settings import SettingsConfigDict
from websockets.asyncio.server import ServerConnection, serve

from tickwire.events import Trade
from tickwire.hookspecs import hookimpl
from tickwire.protocols import (
    Capabilities,
    Connection,
    Heartbeat,
    Item,
    Limits,
    MalformedFrame,
    Notice,
    ProviderInfo,
    ProviderRegistrar,
)
from tickwire.settings import SourceSettings
from tickwire.transport import WebSocketConnector

KEEPALIVE = 1.0


class JsonFeedSettings(SourceSettings):
    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_JSONFEED_")

    ws_url: str | None = "ws://127.0.0.1:1"
    symbols_per_connection: int | None = None


class _Msg(msgspec.Struct):
    type: str
    s: str | None = None
    p: str | None = None
    q: str | None = None
    t: int | None = None
    id: int | None = None
    side: str | None = None
    symbol: str | None = None
    msg: str | None = None


_decoder = msgspec.json.Decoder(_Msg)


def normalize(frame: bytes | str, received_ts: int) -> list[Item]:
    try:
        msg = _decoder.decode(frame)
    except msgspec.DecodeError as exc:
        raise MalformedFrame(str(exc)) from None
    if msg.type == "trade":
        if msg.s is None or msg.p is None or msg.q is None or msg.t is None:
            raise MalformedFrame("trade without s, p, q or t")
        try:
            price, size = Decimal(msg.p), Decimal(msg.q)
        except ArithmeticError:
            raise MalformedFrame("bad decimal") from None
        side = msg.side if msg.side in ("buy", "sell") else None
        return [
            Trade(
                "jsonfeed",
                msg.s,
                msg.t,
                received_ts,
                price,
                size,
                side,  # type: ignore[arg-type]
                None if msg.id is None else str(msg.id),
            )
        ]
    if msg.type == "ping":
        return [Heartbeat("jsonfeed")]
    if msg.type == "error":
        return [Notice("jsonfeed", msg.msg or "error", symbol=msg.symbol)]
    return []


class Subscriber:
    async def subscribe(self, conn: Connection, symbols: Sequence[str]) -> None:
        await conn.send(json.dumps({"op": "subscribe", "symbols": list(symbols)}))


@hookimpl
def tickwire_register_providers(register: ProviderRegistrar) -> None:
    register(
        ProviderInfo(
            "jsonfeed",
            JsonFeedSettings,
            Capabilities(
                channels=frozenset({"trades"}),
                trade_ids="sequential",
                backfill=frozenset({"trades"}),
            ),
            Limits(keepalive=KEEPALIVE, messages_per_second=50, subscribe_within=2),
            description="core's test provider",
        )
    )


@hookimpl
def tickwire_connect(source: SourceSettings, info: ProviderInfo) -> WebSocketConnector | None:
    if source.provider != "jsonfeed":
        return None
    assert source.ws_url is not None
    return WebSocketConnector(source.ws_url)


@hookimpl
def tickwire_subscribe(source: SourceSettings, info: ProviderInfo) -> Subscriber | None:
    return Subscriber() if source.provider == "jsonfeed" else None


@hookimpl
def tickwire_normalize(source: SourceSettings, info: ProviderInfo) -> Any:
    return normalize if source.provider == "jsonfeed" else None


class FakeFeed:
    """The jsonfeed fake server: real websockets on 127.0.0.1."""

    def __init__(self) -> None:
        self.clients: set[ServerConnection] = set()
        self.subscribes: list[list[str]] = []
        self.connections = 0
        self.stalled = False
        self.next_id: dict[str, int] = {}
        self.ws_url = ""
        self._server: Any = None

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        try:
            msg = json.loads(await ws.recv())
            self.subscribes.append(msg["symbols"])
            self.clients.add(ws)
            async for _ in ws:
                pass
        except websockets.ConnectionClosed:
            pass
        finally:
            self.clients.discard(ws)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeFeed]:
        async with serve(self._handler, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            self.ws_url = f"ws://127.0.0.1:{port}"
            self._server = server
            yield self

    async def broadcast(self, obj: Any) -> None:
        if self.stalled:
            return
        data = obj if isinstance(obj, str) else json.dumps(obj)
        for ws in list(self.clients):
            with suppress(websockets.ConnectionClosed):
                await ws.send(data)

    async def trade(
        self,
        symbol: str,
        price: str,
        size: str = "1",
        *,
        ts: int | None = None,
        side: str = "buy",
        skip: int = 0,
    ) -> int:
        tid = self.next_id.get(symbol, 100) + skip
        self.next_id[symbol] = tid + 1
        await self.broadcast(
            {
                "type": "trade",
                "s": symbol,
                "p": price,
                "q": size,
                "t": ts if ts is not None else _now(),
                "id": tid,
                "side": side,
            }
        )
        return tid

    async def send_raw(self, frame: str) -> None:
        await self.broadcast(frame)

    async def drop_connections(self) -> None:
        for ws in list(self.clients):
            ws.transport.abort()
        self.clients.clear()

    async def wait_clients(self, n: int = 1, timeout: float = 10) -> None:
        with anyio.fail_after(timeout):
            while len(self.clients) < n:
                await anyio.sleep(0.01)

    async def market(self, symbols: Iterable[str], every: float = 0.02) -> None:
        """Trade every symbol every ``every`` seconds, forever (a simulated market)."""
        price = 100
        while True:
            for s in symbols:
                if self.clients:
                    await self.trade(s, f"{price}.25")
            price += 1
            await anyio.sleep(every)


def _now() -> int:
    import time

    return time.time_ns()
