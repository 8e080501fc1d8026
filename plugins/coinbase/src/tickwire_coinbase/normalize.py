"""Coinbase Exchange feed frames → tickwire events and control items.

One typed :mod:`msgspec` decode per frame into a tagged union of the message types tickwire
reads; msgspec builds each :class:`~decimal.Decimal` straight from the JSON text (never through
float) and the normalizer refuses NaN, infinities, negative sizes and non-positive prices;
ISO 8601 times become integer nanoseconds by :func:`parse_time`, which
caches the epoch of each minute prefix. Unknown message types are ignored (Coinbase adds types
at will); everything unreadable raises :class:`~tickwire.protocols.MalformedFrame`, and nothing
else is ever raised.
"""

from __future__ import annotations

import re
from calendar import timegm
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Literal, TypeAlias

import msgspec

from tickwire.events import BookDelta, BookSide, BookSnapshot, Quote, Side, Trade
from tickwire.protocols import Heartbeat, Item, MalformedFrame, Notice, Subscribed

PROVIDER = "coinbase"

# ---- numbers and times -------------------------------------------------------------------


def decimal_of(text: str, what: str) -> Decimal:
    """Read a non-negative decimal string (``"10101.80000000"``) exactly, never via float.

    Python's decimal syntax applies; ``NaN``, infinities and negative numbers are refused.
    """
    try:
        value = Decimal(text)
        if value >= 0 and value.is_finite():
            return value
    except ArithmeticError:  # InvalidOperation, also NaN in the comparison
        pass
    raise MalformedFrame(f"{what} is not a finite non-negative decimal: {text[:40]!r}")


def price_of(text: str, what: str = "price") -> Decimal:
    """Read a positive decimal string exactly (see :func:`decimal_of`)."""
    try:
        value = Decimal(text)
        if value > 0 and value.is_finite():
            return value
    except ArithmeticError:
        pass
    raise MalformedFrame(f"{what} is not a finite positive decimal: {text[:40]!r}")


_MINUTE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2})", re.ASCII)
_REST = re.compile(r":([0-5][0-9])(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})", re.ASCII)
#: Epoch seconds of ``YYYY-MM-DDTHH:MM`` prefixes, and epoch nanoseconds of
#: ``YYYY-MM-DDTHH:MM:SS.`` prefixes, already seen.
_minute_cache: dict[str, int] = {}
_second_cache: dict[str, int] = {}
_CACHE_MAX = 4096
#: Nanoseconds per unit of an ``n``-digit fraction.
_SCALE: tuple[int, ...] = tuple(int(10 ** (9 - n)) for n in range(10))


def parse_time(text: str) -> int:
    """``2021-04-17T16:43:37.123456Z`` → integer nanoseconds since the epoch, exactly.

    Any number of fractional digits (beyond nine they are truncated); ``Z`` or a ``±HH:MM``
    offset. Raises :class:`MalformedFrame` for anything else. The fast path (a second already
    seen, six digits and ``Z``, Coinbase's form) is a dict lookup, one ``int`` and one add.
    """
    base = _second_cache.get(text[:20])  # "YYYY-MM-DDTHH:MM:SS."
    if base is not None and len(text) == 27 and text[26] == "Z":
        frac = text[20:26]
        if frac.isdigit() and frac.isascii():
            return base + int(frac) * 1000
    return _parse_time_slow(text)


def _parse_time_slow(text: str) -> int:
    prefix = text[:16]
    minute = _minute_cache.get(prefix)
    if minute is None:
        minute = _minute_epoch(prefix)
    match = _REST.fullmatch(text, 16)
    if match is None:
        raise MalformedFrame(f"not an ISO 8601 time: {text[:40]!r}")
    sec, frac, zone = match.groups()
    seconds = minute + int(sec)
    if frac is not None and zone == "Z":
        if len(_second_cache) >= _CACHE_MAX:
            _second_cache.clear()
        _second_cache[text[:20]] = seconds * 1_000_000_000
    if zone != "Z":
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise MalformedFrame(f"not a valid UTC offset: {zone!r}")
        offset = hours * 3600 + minutes * 60
        seconds += -offset if zone[0] == "+" else offset
    if frac is None:
        return seconds * 1_000_000_000
    return seconds * 1_000_000_000 + int(frac[:9]) * _SCALE[min(len(frac), 9)]


def _minute_epoch(prefix: str) -> int:
    match = _MINUTE.fullmatch(prefix)
    if match is None:
        raise MalformedFrame(f"not an ISO 8601 time: {prefix[:40]!r}")
    year, month, day, hour, minute = (int(part) for part in match.groups())
    if not (1 <= month <= 12 and 1 <= day <= _days_in(year, month) and hour < 24 and minute < 60):
        raise MalformedFrame(f"not a valid date and time: {prefix!r}")
    seconds = timegm((year, month, day, hour, minute, 0, 0, 0, 0))
    if len(_minute_cache) >= _CACHE_MAX:
        _minute_cache.clear()
    _minute_cache[prefix] = seconds
    return seconds


def _days_in(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


# ---- the wire messages tickwire reads ----------------------------------------------------


class _Match(msgspec.Struct, tag_field="type", tag="match", gc=False):
    trade_id: int
    product_id: str
    time: str
    size: Decimal  # msgspec builds the Decimal from the JSON text (string or number)
    price: Decimal
    side: Literal["buy", "sell"]


class _LastMatch(_Match, tag="last_match", gc=False):
    pass


class _Ticker(msgspec.Struct, tag_field="type", tag="ticker", gc=False):
    product_id: str
    best_bid: Decimal | None = None
    best_ask: Decimal | None = None
    best_bid_size: Decimal | None = None
    best_ask_size: Decimal | None = None
    time: str | None = None


class _Heartbeat(msgspec.Struct, tag_field="type", tag="heartbeat", gc=False):
    product_id: str
    time: str
    last_trade_id: int


class _Channel(msgspec.Struct, gc=False):
    name: str
    product_ids: list[str] = []


class _Subscriptions(msgspec.Struct, tag_field="type", tag="subscriptions", gc=False):
    channels: list[_Channel | str]


class _Error(msgspec.Struct, tag_field="type", tag="error", gc=False):
    message: str
    reason: str | None = None


class _Snapshot(msgspec.Struct, tag_field="type", tag="snapshot", gc=False):
    product_id: str
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    time: str | None = None


class _L2Update(msgspec.Struct, tag_field="type", tag="l2update", gc=False):
    product_id: str
    time: str
    changes: list[tuple[Literal["buy", "sell"], Decimal, Decimal]]


_Message: TypeAlias = (
    _Match | _LastMatch | _Ticker | _Heartbeat | _Subscriptions | _Error | _Snapshot | _L2Update
)
_KNOWN = frozenset(
    ("match", "last_match", "ticker", "heartbeat", "subscriptions", "error", "snapshot", "l2update")
)
_TAKER: dict[str, Side] = {"sell": "buy", "buy": "sell"}
_BOOK_SIDE: dict[str, BookSide] = {"buy": "bid", "sell": "ask"}
_NOT_VALID_PRODUCT = re.compile(r"\s*(\S*) is not a valid product\s*")
_AUTH_HINT = (
    "Coinbase requires authentication for level2 (and full, level3): set api_key, api_secret "
    "and passphrase (TICKWIRE_COINBASE_API_KEY, TICKWIRE_COINBASE_API_SECRET, "
    "TICKWIRE_COINBASE_PASSPHRASE), or use book_channel = 'level2_batch'"
)

_decoder: msgspec.json.Decoder[_Message] = msgspec.json.Decoder(_Message)
_any_decoder: msgspec.json.Decoder[object] = msgspec.json.Decoder()


def _excuse(frame: bytes | str, exc: msgspec.DecodeError) -> MalformedFrame | None:
    """Why a frame failed the typed decode, or ``None`` if it is a type we ignore."""
    try:
        value = _any_decoder.decode(frame)
    except (msgspec.DecodeError, UnicodeError, RecursionError, OverflowError):
        return MalformedFrame(f"invalid JSON: {exc}")
    if not isinstance(value, dict):
        return MalformedFrame(f"not a JSON object: {type(value).__name__}")
    kind = value.get("type")
    if not isinstance(kind, str):
        return MalformedFrame("no string 'type' field")
    if kind not in _KNOWN:
        return None
    return MalformedFrame(f"{kind}: {exc}")


class CoinbaseNormalizer:
    """Turns one feed frame into tickwire items: ``normalizer(frame, received_ts)``.

    One instance per connection. It keeps no market state (the feed's ``snapshot`` and
    ``l2update`` already carry absolute sizes); the core's gap detector tracks trade ids.
    """

    __slots__ = ("provider",)

    def __init__(self, provider: str = PROVIDER) -> None:
        self.provider = provider

    def __call__(self, frame: bytes | str, received_ts: int) -> Sequence[Item]:
        try:
            msg = _decoder.decode(frame)
        except msgspec.DecodeError as exc:
            excuse = _excuse(frame, exc)
            if excuse is None:
                return ()
            raise excuse from None
        except (UnicodeError, RecursionError, OverflowError) as exc:
            raise MalformedFrame(f"undecodable frame: {type(exc).__name__}") from None
        if isinstance(msg, _Match):  # match and last_match: the hot path, inline
            price = msg.price
            size = msg.size
            try:  # ordering a NaN raises; infinities fail the upper bound
                sane = _ZERO < price < _INF and _ZERO <= size < _INF
            except ArithmeticError:
                sane = False
            if sane:
                return (
                    Trade(
                        self.provider,
                        msg.product_id,
                        parse_time(msg.time),
                        received_ts,
                        price,
                        size,
                        _TAKER[msg.side],
                        str(msg.trade_id),
                    ),
                )
            raise MalformedFrame(f"{msg.product_id}: bad price {price} or size {size}")
        try:
            return self._convert(msg, received_ts)
        except (ArithmeticError, ValueError, TypeError) as exc:
            if isinstance(exc, MalformedFrame):
                raise
            raise MalformedFrame(f"{type(msg).__name__[1:].lower()}: {exc}") from None

    def leading_trades(self, frames: Sequence[object], received_ts: int) -> list[Trade]:
        """The trades of the longest run of ``frames``, from the first, that are each one
        plain, sane ``match`` (or ``last_match``): one trade per frame, in order.

        The runner's fast path for a batch of frames (see
        :class:`tickwire._runner.normalize.FrameHandler`): the same decode and checks as
        calling the normalizer on each frame, without a call, a tuple and the generic checks per
        frame. It stops, without raising, at the first frame that is anything else (another
        message type, malformed, an absurd value, not ``str``/``bytes``): the runner hands
        that frame and the rest to the normalizer one by one, which isolates what is malformed
        exactly as before.
        """
        decode = _decoder.decode
        provider = self.provider
        seconds = _second_cache
        taker = _TAKER
        zero, inf = _ZERO, _INF
        out: list[Trade] = []
        append = out.append
        for frame in frames:
            try:
                msg = decode(frame)  # type: ignore[arg-type]
            except Exception:  # malformed, an ignored type, an Acked wrapper: the slow path
                break
            if type(msg) is not _Match and type(msg) is not _LastMatch:
                break
            price = msg.price
            size = msg.size
            try:
                if not (zero < price < inf and zero <= size < inf):
                    break
            except ArithmeticError:
                break
            text = msg.time
            base = seconds.get(text[:20])  # parse_time's fast path, inline
            frac = text[20:26]
            if (
                base is not None
                and len(text) == 27
                and text[26] == "Z"
                and frac.isdigit()
                and frac.isascii()
            ):
                ts = base + int(frac) * 1000
            else:
                try:
                    ts = _parse_time_slow(text)
                except MalformedFrame:
                    break
            append(
                Trade(
                    provider,
                    msg.product_id,
                    ts,
                    received_ts,
                    price,
                    size,
                    taker[msg.side],
                    str(msg.trade_id),
                )
            )
        return out

    def _convert(self, msg: _Message, received_ts: int) -> Sequence[Item]:
        if type(msg) is _L2Update:
            changes: list[tuple[BookSide, Decimal, Decimal]] = [
                (_BOOK_SIDE[side], _price(price), _size(size)) for side, price, size in msg.changes
            ]
            return (
                BookDelta(
                    self.provider, msg.product_id, parse_time(msg.time), received_ts, changes
                ),
            )
        if type(msg) is _Ticker:
            return (self._quote(msg, received_ts),)
        if type(msg) is _Heartbeat:
            return (
                Heartbeat(
                    self.provider, msg.product_id, parse_time(msg.time), str(msg.last_trade_id)
                ),
            )
        if type(msg) is _Snapshot:
            ts = received_ts if msg.time is None else parse_time(msg.time)
            bids = sorted(_levels(msg.bids), key=_price_key, reverse=True)
            asks = sorted(_levels(msg.asks), key=_price_key)
            return (BookSnapshot(self.provider, msg.product_id, ts, received_ts, bids, asks),)
        if type(msg) is _Subscriptions:
            return (Subscribed(self.provider, _symbols(msg.channels)),)
        assert type(msg) is _Error
        return (self._notice(msg),)

    def _quote(self, msg: _Ticker, received_ts: int) -> Quote:
        bid = _side_price(msg.best_bid, "best_bid")
        ask = _side_price(msg.best_ask, "best_ask")
        bid_size = msg.best_bid_size
        ask_size = msg.best_ask_size
        return Quote(
            self.provider,
            msg.product_id,
            received_ts if msg.time is None else parse_time(msg.time),
            received_ts,
            bid,
            None if bid_size is None else _size(bid_size, "best_bid_size"),
            ask,
            None if ask_size is None else _size(ask_size, "best_ask_size"),
        )

    def _notice(self, msg: _Error) -> Notice:
        reason = msg.reason or ""
        text = f"{msg.message}: {reason}" if reason else msg.message
        invalid = _NOT_VALID_PRODUCT.fullmatch(reason)
        if invalid is not None:
            return Notice(self.provider, text, symbol=invalid.group(1) or None, code="product")
        if "require authentication" in reason or "could not be authenticated" in msg.message:
            return Notice(self.provider, f"{text} — {_AUTH_HINT}", code="auth")
        return Notice(self.provider, text)


_ZERO = Decimal(0)
_INF = Decimal("Infinity")


def _price(value: Decimal, what: str = "price") -> Decimal:
    """``value`` if it is a finite positive price."""
    if value.is_finite() and value > _ZERO:
        return value
    raise MalformedFrame(f"{what} is not a finite positive decimal: {value}")


def _size(value: Decimal, what: str = "size") -> Decimal:
    if value.is_finite() and value >= _ZERO:
        return value
    raise MalformedFrame(f"{what} is not a finite non-negative decimal: {value}")


def _side_price(value: Decimal | None, what: str) -> Decimal | None:
    """A best bid or ask; ``0`` (a product without orders) reads as no quote."""
    if value is None:
        return None
    return None if _size(value, what) == _ZERO else value


def _levels(levels: list[tuple[Decimal, Decimal]]) -> list[tuple[Decimal, Decimal]]:
    return [(_price(price), _size(size)) for price, size in levels]


def _price_key(level: tuple[Decimal, Decimal]) -> Decimal:
    return level[0]


def _symbols(channels: Iterable[_Channel | str]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for channel in channels:
        if isinstance(channel, _Channel):
            for product in channel.product_ids:
                seen[product] = None
    return tuple(seen)


__all__ = ("PROVIDER", "CoinbaseNormalizer", "decimal_of", "parse_time", "price_of")
