"""The subscribe stage: one ``watch_*`` loop per (symbol, channel), handing rows to the runner.

ccxt.pro owns its websocket and sends its own ``SUBSCRIBE`` inside every ``watch_*`` call, so
there is no tickwire Subscriber for ccxt: the connection starts these loops itself when it
opens (and so again after every reopen: that is the resubscribe). The rules every loop keeps,
because ccxt.pro loses data silently otherwise:

* one loop per symbol, never ``watch_*_for_symbols`` (which returns one symbol per call and can
  starve the others);
* call ``watch_*`` again at once: rows are encoded and handed off with ``send_nowait`` (awaiting
  only when the hand-off buffer is full), never awaiting anything else between two calls;
* never wrap a call in a per-call timeout (``asyncio.wait_for`` strands the cache tail);
* compare what ccxt counted as new with what it returned: more counted than returned means its
  ring buffer (``tradesLimit``) overflowed, which is logged and recorded as a Gap.

Each loop encodes what it got as one JSON frame (see :mod:`tickwire_ccxtpro.normalize`), with
numbers as text: the exchange's own text where ccxt keeps it (``trade['info']``), else the
shortest text that reads back as the same float.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
import orjson
from anyio.streams.memory import MemoryObjectSendStream

from tickwire_ccxtpro import exchanges

log = logging.getLogger("tickwire.ccxt")

Put = Callable[[bytes], Any]


def num(value: Any) -> str | None:
    """A ccxt number as text: ``repr`` of a float is the shortest text that reads back the same."""
    if value is None:
        return None
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return None
        return repr(value)
    return str(value)


class Handoff:
    """Where the loops put frames: a bounded memory stream, waited on only when it is full."""

    def __init__(self, send: MemoryObjectSendStream[bytes | str]) -> None:
        self._send = send

    async def put(self, frame: bytes | str) -> None:
        """Hand one frame to the runner (raises ``anyio.ClosedResourceError`` once lost)."""
        try:
            self._send.send_nowait(frame)
        except anyio.WouldBlock:
            await self._send.send(frame)

    def put_nowait(self, frame: bytes | str) -> None:
        """Hand one frame on from a callback; dropped (and logged) only if the buffer is full."""
        try:
            self._send.send_nowait(frame)
        except anyio.WouldBlock:
            log.warning("ccxt hand-off buffer full: a malformed frame was not recorded")
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass


def _gap(symbol: str, kind: str, start: int, end: int, reason: str) -> bytes:
    return orjson.dumps(
        {"k": "g", "s": symbol, "kind": kind, "start": start, "end": end, "reason": reason}
    )


def _new_count(cache: Any, symbol: str) -> int | None:
    """How many rows ccxt counted as new for ``symbol`` at its last ``getLimit``."""
    counts = getattr(cache, "_new_updates_by_symbol", None)
    if isinstance(counts, dict):
        value = counts.get(symbol)
        return value if isinstance(value, int) else None
    return None


async def watch_trades(exchange: Any, symbol: str, out: Handoff, *, sequential: bool) -> None:
    """Stream ``symbol``'s trades forever (returns only by raising)."""
    raw_price, raw_amount = exchanges.RAW_TRADE_FIELDS.get(exchange.id, (None, None))
    last_ts: int | None = None
    dumps = orjson.dumps
    while True:
        trades = await exchange.watch_trades(symbol)
        received = time.time_ns()
        if not trades:
            continue
        counted = _new_count(exchange.trades.get(symbol), symbol)
        rows = []
        for t in trades:
            info = t.get("info")
            price = amount = None
            if raw_price is not None and isinstance(info, dict):
                price = info.get(raw_price)
                amount = info.get(raw_amount)
            rows.append(
                (
                    t.get("id"),
                    t.get("timestamp"),
                    price if isinstance(price, str) else num(t.get("price")),
                    amount if isinstance(amount, str) else num(t.get("amount")),
                    t.get("side"),
                )
            )
        if counted is not None and counted > len(trades):
            lost = counted - len(trades)
            log.warning(
                "ccxt.cache_overflow %s %s: ccxt dropped %d trades (raise trades_cache above %d)",
                exchange.id,
                symbol,
                lost,
                exchange.options.get("tradesLimit"),
                extra={"event": "ccxt.cache_overflow", "fields": {"symbol": symbol, "lost": lost}},
            )
            first_ts = rows[0][1]
            if not sequential and last_ts is not None and isinstance(first_ts, int):
                await out.put(
                    _gap(symbol, "trades", last_ts * 1_000_000, first_ts * 1_000_000, "sequence")
                )
        ts = rows[-1][1]
        if isinstance(ts, int):
            last_ts = ts
        await out.put(dumps({"k": "t", "s": symbol, "rt": received, "r": rows}))


async def watch_ohlcv(exchange: Any, symbol: str, timeframe: str, out: Handoff) -> None:
    """Stream ``symbol``'s candles of ``timeframe``; the newest row is the forming one.

    ccxt returns only the rows touched since the last call, so when a new bucket starts the
    previous one (already sent as forming) is sent once more, closed.
    """
    open_ts: int | None = None
    while True:
        rows = await exchange.watch_ohlcv(symbol, timeframe)
        received = time.time_ns()
        if not rows:
            continue
        cache = exchange.ohlcvs.get(symbol, {}).get(timeframe)
        newest = max(r[0] for r in rows)
        if cache:
            newest = max(newest, cache[-1][0])
        out_rows = []
        seen = set()
        for r in sorted(rows, key=lambda r: r[0]):
            seen.add(r[0])
            out_rows.append((r[0], *(num(v) for v in r[1:6]), r[0] < newest))
        if open_ts is not None and open_ts < newest and open_ts not in seen and cache:
            row = getattr(cache, "hashmap", {}).get(open_ts)
            if row is not None:
                out_rows.insert(0, (row[0], *(num(v) for v in row[1:6]), True))
        open_ts = newest
        await out.put(
            orjson.dumps({"k": "c", "s": symbol, "i": timeframe, "rt": received, "r": out_rows})
        )


async def watch_ticker(exchange: Any, symbol: str, out: Handoff) -> None:
    """Stream ``symbol``'s best bid and offer from its ticker."""
    while True:
        t = await exchange.watch_ticker(symbol)
        received = time.time_ns()
        ts = t.get("timestamp")
        row = (
            ts if isinstance(ts, int) else received // 1_000_000,
            num(t.get("bid")),
            num(t.get("bidVolume")),
            num(t.get("ask")),
            num(t.get("askVolume")),
        )
        await out.put(orjson.dumps({"k": "q", "s": symbol, "rt": received, "r": row}))


async def watch_order_book(
    exchange: Any, symbol: str, out: Handoff, *, depth: int | None, every: float
) -> None:
    """Stream ``symbol``'s book as snapshots, at most one per ``every`` seconds.

    A sequence break (ccxt's ``ChecksumError``/``InvalidNonce``) is recorded as a ``book`` Gap
    and the loop calls again, which makes ccxt resubscribe and take a fresh snapshot.
    """
    errors = exchanges.ccxt_base()
    last_sent = 0.0
    last_ts: int | None = None
    while True:
        try:
            book = await exchange.watch_order_book(symbol, depth)
        except errors.InvalidNonce as exc:
            now = time.time_ns()
            log.warning(
                "ccxt.book_resync %s %s: %s",
                exchange.id,
                symbol,
                exc,
                extra={"event": "ccxt.book_resync", "fields": {"symbol": symbol}},
            )
            await out.put(
                _gap(symbol, "book", (last_ts or now // 1_000_000) * 1_000_000, now, "sequence")
            )
            continue
        mono = time.monotonic()
        if every and mono - last_sent < every:
            continue
        last_sent = mono
        received = time.time_ns()
        ts = book.get("timestamp")
        if isinstance(ts, int):
            last_ts = ts
        bids = book["bids"][:depth] if depth else book["bids"]
        asks = book["asks"][:depth] if depth else book["asks"]
        await out.put(
            orjson.dumps(
                {
                    "k": "b",
                    "s": symbol,
                    "rt": received,
                    "ts": ts if isinstance(ts, int) else received // 1_000_000,
                    "n": book.get("nonce"),
                    "b": [(num(p), num(a)) for p, a, *_ in bids],
                    "a": [(num(p), num(a)) for p, a, *_ in asks],
                }
            )
        )


__all__ = (
    "Handoff",
    "num",
    "watch_ohlcv",
    "watch_order_book",
    "watch_ticker",
    "watch_trades",
)
