"""The normalized event model every provider emits and every sink stores.

Events are immutable, slotted :class:`msgspec.Struct` records: cheap to build on the hot path,
and encodable to JSON or MessagePack without hand-written code (the console sink, the
dead-letter file and the NATS bus all use that). Times are integer nanoseconds since the Unix
epoch (UTC); prices and sizes are :class:`decimal.Decimal`, parsed from the provider's text.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, TypeAlias

import msgspec

Side: TypeAlias = Literal["buy", "sell"]
Interval: TypeAlias = Literal["1s", "1m", "5m", "15m", "1h", "4h", "1d"]
CandleBasis: TypeAlias = Literal["trade", "mid", "bid"]
CandleSource: TypeAlias = Literal["stream", "built", "backfill"]
GapReason: TypeAlias = Literal["sequence", "disconnect", "candle", "startup"]
GapStatus: TypeAlias = Literal["open", "filled", "empty", "failed"]
BookSide: TypeAlias = Literal["bid", "ask"]

NS_PER_SECOND = 1_000_000_000

#: Length of each candle interval in nanoseconds.
INTERVAL_NS: dict[str, int] = {
    "1s": NS_PER_SECOND,
    "1m": 60 * NS_PER_SECOND,
    "5m": 300 * NS_PER_SECOND,
    "15m": 900 * NS_PER_SECOND,
    "1h": 3600 * NS_PER_SECOND,
    "4h": 4 * 3600 * NS_PER_SECOND,
    "1d": 86400 * NS_PER_SECOND,
}


class Trade(msgspec.Struct, frozen=True, gc=False, tag=True):
    """One executed trade.

    ``side`` is the taker (aggressor) side, or ``None`` when the provider does not say.
    ``trade_id`` is the provider's id as text (or a stable derived id), ``None`` if it has none.
    """

    provider: str
    symbol: str
    ts: int
    received_ts: int
    price: Decimal
    size: Decimal
    side: Side | None = None
    trade_id: str | None = None


class Quote(msgspec.Struct, frozen=True, gc=False, tag=True):
    """Best bid and offer at ``ts``; sizes are ``None`` where the provider has none."""

    provider: str
    symbol: str
    ts: int
    received_ts: int
    bid: Decimal | None
    bid_size: Decimal | None
    ask: Decimal | None
    ask_size: Decimal | None


class Candle(msgspec.Struct, frozen=True, gc=False, tag=True):
    """An OHLC bar for the bucket opening at ``start`` (nanoseconds).

    ``closed`` is False while the bucket is still forming. ``source`` says where it came from:
    ``stream`` (the provider's own streamed candle), ``built`` (tickwire's candle builder) or
    ``backfill`` (the provider's REST history).
    """

    provider: str
    symbol: str
    interval: Interval
    start: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None = None
    trades: int | None = None
    basis: CandleBasis = "trade"
    closed: bool = True
    source: CandleSource = "built"


class BookSnapshot(msgspec.Struct, frozen=True, gc=False, tag=True):
    """The whole order book: bids best (highest) first, asks best (lowest) first."""

    provider: str
    symbol: str
    ts: int
    received_ts: int
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    sequence: int | None = None


class BookDelta(msgspec.Struct, frozen=True, gc=False, tag=True):
    """Changes to the book: ``(side, price, new absolute size)``; size 0 removes the level."""

    provider: str
    symbol: str
    ts: int
    received_ts: int
    changes: list[tuple[BookSide, Decimal, Decimal]]
    sequence: int | None = None


class Gap(msgspec.Struct, frozen=True, gc=False, tag=True):
    """A span of ``kind`` data (``trades``, ``candles:1m``, ``book`` …) known to be missing.

    ``start`` and ``end`` are nanoseconds; ``reason`` says how it was found. ``status`` is
    ``open`` when found, ``filled`` once the backfill wrote what the provider had for it,
    ``empty`` when the provider confirmed it has nothing there (never fetched again), and
    ``failed`` when the backfill gave up on it: the provider refused it, or every retry failed.
    ``detail`` says why, in words a user can act on (the provider's refusal, the last error);
    it is ``None`` for the other states. A failed span still counts as missing: the next
    bootstrap (``tickwire run`` start-up or ``tickwire backfill``) fetches it again. Sinks keep
    one row per (provider, symbol, kind, start): a later status updates it.
    """

    provider: str
    symbol: str
    kind: str
    start: int
    end: int
    reason: GapReason
    status: GapStatus = "open"
    detail: str | None = None


Event: TypeAlias = Trade | Quote | Candle | BookSnapshot | BookDelta | Gap

#: Every event class, in a stable order.
EVENT_TYPES: tuple[type[Event], ...] = (Trade, Quote, Candle, BookSnapshot, BookDelta, Gap)

#: The ``kind`` name of each event class, as used in metrics, subjects and keys.
KIND: dict[type[Event], str] = {
    Trade: "trade",
    Quote: "quote",
    Candle: "candle",
    BookSnapshot: "book_snapshot",
    BookDelta: "book_delta",
    Gap: "gap",
}

_json_encoder = msgspec.json.Encoder(decimal_format="string")
_json_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def to_json(event: Event) -> bytes:
    """Encode one event as a JSON object (with a ``type`` tag; decimals as strings)."""
    return _json_encoder.encode(event)


def from_json(data: bytes | str) -> Event:
    """Decode what :func:`to_json` wrote back into the event."""
    return _json_decoder.decode(data)


def event_time(event: Event) -> int:
    """The event-time of any event in nanoseconds (``start`` for candles and gaps)."""
    if isinstance(event, Candle | Gap):
        return event.start
    return event.ts


def candle_replaces(new: Candle, old: Candle) -> bool:
    """Whether a sink holding ``old`` stores ``new`` in its place (same provider, symbol,
    interval and start). Every sink applies this one rule (its SQL spells it out):

    * the provider's own candle (``stream`` or ``backfill``) replaces anything;
    * a ``built`` candle never replaces the provider's own;
    * a ``built`` candle replaces a ``built`` one unless it counts fewer trades: a builder that
      restarted mid-bucket, or saw a replayed trade of a bucket long closed, knows only part
      of it, and must not overwrite the whole one stored before.
    """
    if new.source != "built":
        return True
    if old.source != "built":
        return False
    return new.trades is None or old.trades is None or new.trades >= old.trades


__all__ = (
    "EVENT_TYPES",
    "INTERVAL_NS",
    "KIND",
    "NS_PER_SECOND",
    "BookDelta",
    "BookSide",
    "BookSnapshot",
    "Candle",
    "CandleBasis",
    "CandleSource",
    "Event",
    "Gap",
    "GapReason",
    "GapStatus",
    "Interval",
    "Quote",
    "Side",
    "Trade",
    "candle_replaces",
    "event_time",
    "from_json",
    "to_json",
)
