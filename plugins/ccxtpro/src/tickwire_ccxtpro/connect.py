"""The connect stage: one ccxt.pro exchange instance per tickwire connection.

:class:`CcxtConnector.open` builds a fresh exchange (markets loaded once per source and reused
with ``set_markets``), starts the watch loops of :mod:`tickwire_ccxtpro.subscribe` and yields a
:class:`CcxtConnection` whose frames are what those loops hand off. ccxt.pro has no background
reconnect: when one of its websockets dies, the pending ``watch_*`` raises ``NetworkError``.
The connection then stops taking frames, lets the runner drain what was handed off, and ends
(``close_reason`` says why), so the runner logs ``connection.lost``, records the disconnect
window (a Gap the backfill fills), backs off and opens again: a new exchange instance,
new websockets, new ``SUBSCRIBE``\\ s and fresh order-book snapshots.

A subscription ccxt refuses for good (``BadSymbol``, ``NotSupported``, any other
``ExchangeError``) is reported as a ``subscription.rejected`` notice and stays off until the
next reconnect; the other symbols go on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import orjson
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tickwire.protocols import ConnectionFailed, Frame
from tickwire_ccxtpro import exchanges
from tickwire_ccxtpro.settings import CcxtSettings
from tickwire_ccxtpro.subscribe import (
    Handoff,
    watch_ohlcv,
    watch_order_book,
    watch_ticker,
    watch_trades,
)

log = logging.getLogger("tickwire.ccxt")

_HEARTBEAT = orjson.dumps({"k": "h"})


def _reason(exc: BaseException) -> str:
    errors = exchanges.ccxt_base()
    if isinstance(exc, errors.RequestTimeout):
        return "timeout"
    if isinstance(exc, errors.AuthenticationError):
        return "auth"
    if isinstance(exc, errors.DDoSProtection | errors.RateLimitExceeded):
        return "http"
    if isinstance(exc, errors.ExchangeNotAvailable):
        return "refused"
    if isinstance(exc, errors.NetworkError):
        return "refused"
    return "protocol"


class CcxtConnection:
    """One exchange instance's worth of watch loops, seen by the runner as a connection.

    Iterating yields the frames the loops hand off, and ends once ccxt reported a lost
    websocket (after every frame handed off before it). ``send`` does nothing: ccxt sends its
    own subscribe messages.
    """

    def __init__(
        self,
        exchange: Any,
        send: MemoryObjectSendStream[Frame],
        receive: MemoryObjectReceiveStream[Frame],
    ) -> None:
        self.exchange = exchange
        self._send = send
        self._receive = receive
        self.handoff = Handoff(send)
        self.close_reason: str | None = None

    async def send(self, message: Frame) -> None:
        """Ignored: ccxt.pro subscribes inside ``watch_*``."""

    def __aiter__(self) -> AsyncIterator[Frame]:
        """The frames handed off by the watch loops; ends after a lost websocket."""
        return self._receive.__aiter__()

    def malformed(self, text: str, reason: str) -> None:
        """A frame ccxt could not read: pass it on as it came, for the runner to count."""
        self.handoff.put_nowait(text)

    def lost(self, exc: BaseException) -> None:
        """ccxt lost a websocket: take no more frames; the iterator ends when drained."""
        if self.close_reason is None:
            self.close_reason = f"{type(exc).__name__}: {exc}"
        self._send.close()


class CcxtConnector:
    """Opens exchange instances for one ``ccxt:<id>`` source."""

    def __init__(self, source: CcxtSettings, *, sequential: bool) -> None:
        self.source = source
        self.sequential = sequential
        self._markets: Any = None
        self._currencies: Any = None

    def open(self, symbols: Sequence[str]) -> Any:
        """An async context manager yielding a :class:`CcxtConnection` for ``symbols``."""
        return self._open(tuple(symbols))

    @asynccontextmanager
    async def _open(self, symbols: tuple[str, ...]) -> AsyncIterator[CcxtConnection]:
        source = self.source
        errors = exchanges.ccxt_base()
        exchange = exchanges.make_exchange(source.exchange_id, source.exchange_config())
        send, receive = anyio.create_memory_object_stream[Frame](source.handoff_buffer)
        conn = CcxtConnection(exchange, send, receive)
        exchange.tickwire_on_malformed = conn.malformed
        try:
            await self._markets_for(exchange, errors)
            for symbol in symbols:
                if symbol not in exchange.markets:
                    raise ConnectionFailed(
                        f"{source.provider} has no market {symbol!r} (ccxt unified symbols "
                        "look like 'BTC/USDT')",
                        reason="protocol",
                    )
            async with anyio.create_task_group() as tg:
                for symbol in symbols:
                    self._start(tg, conn, symbol)
                tg.start_soon(self._heartbeat, conn)
                try:
                    yield conn
                finally:
                    tg.cancel_scope.cancel()
        finally:
            send.close()
            receive.close()
            with anyio.CancelScope(shield=True):
                await exchange.close()

    async def _markets_for(self, exchange: Any, errors: Any) -> None:
        if self._markets is not None:
            exchange.set_markets(self._markets, self._currencies)
            return
        try:
            await exchange.load_markets()
        except errors.NetworkError as exc:
            raise ConnectionFailed(f"load_markets: {exc}", reason=_reason(exc)) from exc
        except errors.ExchangeError as exc:
            raise ConnectionFailed(f"load_markets: {exc}", reason=_reason(exc)) from exc
        self._markets = exchange.markets
        self._currencies = exchange.currencies

    def _start(self, tg: TaskGroup, conn: CcxtConnection, symbol: str) -> None:
        source = self.source
        ex = conn.exchange
        out = conn.handoff
        for channel in source.channels:
            if channel == "trades":
                tg.start_soon(
                    self._guard,
                    conn,
                    symbol,
                    watch_trades(ex, symbol, out, sequential=self.sequential),
                )
            elif channel == "quotes":
                tg.start_soon(self._guard, conn, symbol, watch_ticker(ex, symbol, out))
            elif channel == "book":
                every = source.book_interval.total_seconds()
                tg.start_soon(
                    self._guard,
                    conn,
                    symbol,
                    watch_order_book(ex, symbol, out, depth=source.book_depth, every=every),
                )
            elif channel == "candles":
                for interval in source.candle_intervals:
                    tg.start_soon(self._guard, conn, symbol, watch_ohlcv(ex, symbol, interval, out))

    async def _guard(self, conn: CcxtConnection, symbol: str, loop: Any) -> None:
        errors = exchanges.ccxt_base()
        try:
            await loop
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return  # the connection is already lost; another loop said why
        except errors.NetworkError as exc:
            conn.lost(exc)
        except errors.BaseError as exc:
            notice = {"k": "n", "s": symbol, "m": f"{type(exc).__name__}: {exc}"}
            try:
                await conn.handoff.put(orjson.dumps(notice))
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
        except Exception:
            log.exception("ccxt watch loop for %s failed", symbol)
            raise

    async def _heartbeat(self, conn: CcxtConnection) -> None:
        every = self.source.heartbeat.total_seconds()
        while True:
            await anyio.sleep(every)
            clients = list((conn.exchange.clients or {}).values())
            alive = bool(clients) and all(
                c.connection is not None and not c.connection.closed for c in clients
            )
            if alive:
                try:
                    await conn.handoff.put(_HEARTBEAT)
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return


__all__ = ("CcxtConnection", "CcxtConnector")
