"""The Redis sink: one pipeline (no MULTI) per batch, coalesced, idempotent, every key with a TTL.

Per batch the sink groups the events by key, keeps only what the cache needs (the newest quote
and book of each symbol, the last version of each candle) and sends one pipeline: ``HSET`` and
``PEXPIRE`` for quotes and books, one Lua call per trade stream, candle ZSET and gap hash
(:mod:`tickwire_redis.schema`, which also PUBLISH what they write), and a ``PUBLISH`` of the
newest quote and book of each symbol. Any error raises: the runner keeps the batch, backs off
and calls :meth:`RedisSink.write_batch` again, and every write here is safe to repeat.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from tickwire.events import (
    BookDelta,
    BookSnapshot,
    Candle,
    Event,
    Gap,
    Quote,
    Trade,
    candle_replaces,
    to_json,
)
from tickwire_redis import schema
from tickwire_redis.settings import RedisSettings

_encode = msgspec.json.Encoder(decimal_format="string").encode


class _Book:
    """The order book of one symbol, kept from snapshots and deltas for its top-N hash."""

    __slots__ = ("asks", "bids", "received_ts", "sequence", "ts")

    def __init__(self, snapshot: BookSnapshot) -> None:
        self.bids: dict[Decimal, Decimal] = {p: s for p, s in snapshot.bids if s}
        self.asks: dict[Decimal, Decimal] = {p: s for p, s in snapshot.asks if s}
        self.ts = snapshot.ts
        self.received_ts = snapshot.received_ts
        self.sequence = snapshot.sequence

    def apply(self, delta: BookDelta) -> None:
        """Apply absolute sizes (0 removes): applying the same delta twice changes nothing."""
        for side, price, size in delta.changes:
            levels = self.bids if side == "bid" else self.asks
            if size:
                levels[price] = size
            else:
                levels.pop(price, None)
        self.ts = delta.ts
        self.received_ts = delta.received_ts
        if delta.sequence is not None:
            self.sequence = delta.sequence

    def top(self, provider: str, symbol: str, depth: int) -> tuple[dict[str, str], bytes]:
        """The hash fields of the top ``depth`` levels per side, and the message to publish."""
        bids = heapq.nlargest(depth, self.bids.items())
        asks = heapq.nsmallest(depth, self.asks.items())
        message = _encode(
            {
                "type": "BookTop",
                "provider": provider,
                "symbol": symbol,
                "ts": self.ts,
                "received_ts": self.received_ts,
                "sequence": self.sequence,
                "bids": bids,
                "asks": asks,
            }
        )
        fields = {
            "provider": provider,
            "symbol": symbol,
            "ts": str(self.ts),
            "received_ts": str(self.received_ts),
            "sequence": "" if self.sequence is None else str(self.sequence),
            "bids": _encode(bids).decode(),
            "asks": _encode(asks).decode(),
        }
        return fields, message


def _text(value: Decimal | None) -> str:
    return "" if value is None else str(value)


def _quote_fields(quote: Quote) -> dict[str, str]:
    return {
        "provider": quote.provider,
        "symbol": quote.symbol,
        "ts": str(quote.ts),
        "received_ts": str(quote.received_ts),
        "bid": _text(quote.bid),
        "bid_size": _text(quote.bid_size),
        "ask": _text(quote.ask),
        "ask_size": _text(quote.ask_size),
    }


def trade_identity(trade: Trade) -> str:
    """What makes a trade itself: its ``trade_id``, or its ts, price, size and side."""
    if trade.trade_id is not None:
        return trade.trade_id
    return f"{trade.ts}:{trade.price}:{trade.size}:{trade.side or ''}"


class RedisSink:
    """Writes tickwire events into Redis as a hot cache (see the README for the key layout).

    :param settings: the validated ``[[sinks]] type = "redis"`` entry.
    :param client: an already built ``redis.asyncio.Redis`` to use instead (not closed here).
    """

    def __init__(self, settings: RedisSettings, client: aioredis.Redis | None = None) -> None:
        self.settings = settings
        self._own_client = client is None
        self._client = client
        self._books: dict[tuple[str, str], _Book] = {}
        self._ttl_ms = max(1, int(settings.retention.total_seconds() * 1000))
        self._trades_script: AsyncScript | None = None
        self._candles_script: AsyncScript | None = None
        self._gaps_script: AsyncScript | None = None
        self._scripts: tuple[AsyncScript, ...] = ()
        #: Have redis-py check (and load) the scripts before the next write's pipeline.
        self._verify_scripts = True

    @property
    def client(self) -> aioredis.Redis:
        """The redis-py client (after :meth:`open`)."""
        if self._client is None:
            raise RuntimeError("the Redis sink is not open")
        return self._client

    async def open(self) -> None:
        """Connect (and check the server answers); raises when Redis cannot be reached."""
        if self._client is None:
            timeout = self.settings.socket_timeout.total_seconds()
            password = self.settings.password
            self._client = aioredis.Redis.from_url(
                self.settings.url,
                username=self.settings.username,
                password=password.get_secret_value() if password is not None else None,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                health_check_interval=30,
            )
        client = self._client
        self._trades_script = client.register_script(schema.TRADES_LUA)
        self._candles_script = client.register_script(schema.CANDLES_LUA)
        self._gaps_script = client.register_script(schema.GAPS_LUA)
        self._scripts = (self._trades_script, self._candles_script, self._gaps_script)
        self._verify_scripts = True
        await client.ping()

    async def aclose(self) -> None:
        """Close the connection pool (if this sink built the client)."""
        if self._client is not None and self._own_client:
            await self._client.aclose()
            self._client = None

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Write ``events`` in one pipeline; raise on any failure (a retry is harmless)."""
        assert self._trades_script is not None
        assert self._candles_script is not None
        assert self._gaps_script is not None
        settings = self.settings
        prefix = settings.prefix
        now_ms = time.time_ns() // 1_000_000
        cutoff_ms = now_ms - self._ttl_ms
        cutoff_ns = cutoff_ms * 1_000_000

        quotes: dict[str, Quote] = {}
        trades: dict[str, list[Trade]] = {}
        candles: dict[str, dict[int, Candle]] = {}
        gaps: dict[str, dict[str, Gap]] = {}
        books: dict[tuple[str, str], None] = {}
        for event in events:
            if isinstance(event, Trade):
                if event.ts >= cutoff_ns:
                    trades.setdefault(
                        schema.key(prefix, "trade", event.provider, event.symbol), []
                    ).append(event)
            elif isinstance(event, Quote):
                k = schema.key(prefix, "quote", event.provider, event.symbol)
                old = quotes.get(k)
                if old is None or event.ts >= old.ts:
                    quotes[k] = event
            elif isinstance(event, Candle):
                if event.start >= cutoff_ns:
                    bucket = candles.setdefault(schema.candle_key(prefix, event), {})
                    was = bucket.get(event.start)
                    if was is None or candle_replaces(event, was):
                        bucket[event.start] = event
            elif isinstance(event, BookSnapshot):
                self._books[(event.provider, event.symbol)] = _Book(event)
                books[(event.provider, event.symbol)] = None
            elif isinstance(event, BookDelta):
                book = self._books.get((event.provider, event.symbol))
                if book is not None:  # no snapshot yet: the top-N would be wrong, so wait
                    book.apply(event)
                    books[(event.provider, event.symbol)] = None
            elif isinstance(event, Gap):
                gaps.setdefault(schema.key(prefix, "gap", event.provider, event.symbol), {})[
                    f"{event.kind}:{event.start}"
                ] = event

        for attempt in range(2):
            async with self.client.pipeline(transaction=False) as pipe:
                if self._verify_scripts:
                    # redis-py sends SCRIPT EXISTS (and loads what is missing) before a
                    # pipeline holding scripts: one round trip, so only after opening and
                    # after a failed write (a restarted server has forgotten the scripts).
                    scripts: set[Any] = pipe.scripts  # AsyncScript, typed as Script
                    scripts.update(self._scripts)
                self._queue(pipe, quotes, books, trades, candles, gaps, cutoff_ms)
                try:
                    await pipe.execute()
                except NoScriptError:
                    self._verify_scripts = True
                    if attempt:
                        raise
                    continue  # flushed by hand (SCRIPT FLUSH): load them, write again
                except BaseException:
                    self._verify_scripts = True
                    raise
            self._verify_scripts = False
            return

    def _queue(
        self,
        pipe: Any,
        quotes: dict[str, Quote],
        books: dict[tuple[str, str], None],
        trades: dict[str, list[Trade]],
        candles: dict[str, dict[int, Candle]],
        gaps: dict[str, dict[str, Gap]],
        cutoff_ms: int,
    ) -> None:
        settings = self.settings
        prefix = settings.prefix
        ttl = self._ttl_ms
        publish = settings.publish
        for k, quote in quotes.items():
            pipe.hset(k, mapping=_quote_fields(quote))
            pipe.pexpire(k, ttl)
            if publish:
                pipe.publish(k, to_json(quote))
        depth = settings.book_depth
        for provider, symbol in books:
            k = schema.key(prefix, "book", provider, symbol)
            fields, message = self._books[(provider, symbol)].top(provider, symbol, depth)
            pipe.hset(k, mapping=fields)
            pipe.pexpire(k, ttl)
            if publish:
                pipe.publish(k, message)
        if trades:
            self._queue_trades(pipe, trades, cutoff_ms)
        if candles:
            self._queue_candles(pipe, candles, cutoff_ms)
        if gaps:
            self._queue_gaps(pipe, gaps, cutoff_ms)

    def _queue_trades(self, pipe: Any, trades: dict[str, list[Trade]], cutoff_ms: int) -> None:
        script = self._trades_script
        assert script is not None
        head = (self._ttl_ms, self.settings.trades_keep, cutoff_ms, int(self.settings.publish))
        for k, batch in trades.items():
            batch.sort(key=_by_ts)
            args: list[Any] = [*head]
            for trade in batch:
                ms, seq = schema.trade_id_base(trade.ts)
                args += (ms, seq, trade_identity(trade), to_json(trade))
            pipe.evalsha(script.sha, 2, k, k + ":late", *args)

    def _queue_candles(
        self, pipe: Any, candles: dict[str, dict[int, Candle]], cutoff_ms: int
    ) -> None:
        script = self._candles_script
        assert script is not None
        head = (self._ttl_ms, cutoff_ms, self.settings.candles_keep, int(self.settings.publish))
        for k, bucket in candles.items():
            args: list[Any] = [*head]
            for start, candle in bucket.items():
                args += (start // 1_000_000, to_json(candle))
            pipe.evalsha(script.sha, 1, k, *args)

    def _queue_gaps(self, pipe: Any, gaps: dict[str, dict[str, Gap]], cutoff_ms: int) -> None:
        script = self._gaps_script
        assert script is not None
        for k, by_field in gaps.items():
            args: list[Any] = [self._ttl_ms, cutoff_ms, int(self.settings.publish)]
            for field, gap in by_field.items():
                args += (field, to_json(gap))
            pipe.evalsha(script.sha, 1, k, *args)

    async def enforce_retention(self, now_ns: int) -> int:
        """Trim every trade stream and candle ZSET of this prefix to the retention window.

        Writes already trim the keys they touch; this pass (hourly, by the runner) reaches the
        keys of symbols that stopped updating, and gives back a TTL to any key of the sink's
        that lost it (a process killed between a ``HSET`` and its ``PEXPIRE``, a ``PERSIST``
        by hand). Returns how many stream entries and candles went.
        """
        client = self.client
        cutoff_ms = now_ns // 1_000_000 - self._ttl_ms
        prefix = self.settings.prefix
        kinds = tuple(f"{prefix}:{kind}:".encode() for kind in _KINDS)
        removed = 0
        keys: list[bytes] = []
        async for raw in client.scan_iter(match=f"{_glob(prefix)}:*", count=1000):
            if raw.startswith(kinds):
                keys.append(raw)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            async with client.pipeline(transaction=False) as pipe:
                for k in chunk:
                    pipe.type(k)
                    pipe.pttl(k)
                answers = await pipe.execute()
            streams, zsets, no_ttl = [], [], []
            for k, kind, ttl in zip(chunk, answers[::2], answers[1::2], strict=True):
                if kind == b"stream" and k.startswith(kinds[2]):
                    streams.append(k)
                elif kind == b"zset" and k.startswith(kinds[3]):
                    zsets.append(k)
                if ttl == -1:
                    no_ttl.append(k)
            async with client.pipeline(transaction=False) as pipe:
                for k in streams:
                    pipe.xtrim(k, minid=f"{cutoff_ms}-0", approximate=False)
                for k in zsets:
                    pipe.zremrangebyscore(k, "-inf", f"({cutoff_ms}")
                for k in no_ttl:
                    pipe.pexpire(k, self._ttl_ms)
                results = await pipe.execute()
            removed += sum(int(r) for r in results[: len(streams) + len(zsets)])
        return removed


#: The kinds of key the sink writes (``<prefix>:<kind>:...``), in this order.
_KINDS = ("quote", "book", "trade", "candle", "gap")


def _by_ts(trade: Trade) -> int:
    return trade.ts


def _glob(text: str) -> str:
    """Escape glob metacharacters of ``text`` for SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


__all__ = ("RedisSink", "trade_identity")
