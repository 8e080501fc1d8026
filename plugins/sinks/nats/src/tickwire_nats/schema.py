"""The bus schema: subjects, the wire encoding and the message id of every event.

Subjects
    ``<prefix>.<kind>.<provider>.<symbol>``, e.g. ``tickwire.trade.coinbase.BTC-USD``. ``kind`` is
    :data:`tickwire.events.KIND` (``trade``, ``quote``, ``candle``, ``book_snapshot``,
    ``book_delta``, ``gap``). Provider and symbol go through :func:`encode_token`: NATS tokens
    cannot hold ``.``, ``*``, ``>`` or whitespace, and symbols such as ``CS.D.EURUSD.CFD.IP``,
    ``BTC/USDT`` or ``OANDA:EUR_USD`` have them (or characters that trip up other tools).

Token encoding (reversible, :func:`decode_token` undoes it)
    ASCII letters, digits, ``-`` and ``_`` are kept; every other byte of the UTF-8 text is written
    ``%XX`` (two upper-case hex digits), ``%`` itself included. So ``BTC-USD`` stays
    ``BTC-USD``, ``BTC/USDT`` becomes ``BTC%2FUSDT`` and ``CS.D.EURUSD.CFD.IP`` becomes
    ``CS%2ED%2EEURUSD%2ECFD%2EIP``. The result is never empty and never a wildcard, and a
    subscriber can filter one symbol exactly (``tickwire.trade.coinbase.BTC-USD``) or a provider
    (``tickwire.*.coinbase.>``).

Wire encoding ``msgpack/1`` (header ``Tickwire-Encoding: msgpack/1``)
    The payload is one event as MessagePack, written by msgspec from the event struct: a map of
    field names with a ``type`` tag (``Trade``, ``Quote`` …), decimals as their exact text
    (``"0.00100000"`` stays that, exponent included), times as integers. Maps with field names
    keep old readers working when core adds an optional field (so ``Gap.detail``, the reason a
    gap ``failed``, did not need a new encoding; a reader from before the ``failed`` status
    dead-letters such a gap, the stored gap then stays as it was). An encoding a writer does
    not know is treated as a malformed frame (counted, logged, kept in the dead-letter file).

Message id (header ``Nats-Msg-Id``)
    A 128-bit BLAKE2b digest (32 hex digits) of the event's identity, so two collectors that
    publish the same event produce the same id and JetStream's duplicate window keeps one copy.
    See :func:`message_id` for what the identity of each kind is.
"""

from __future__ import annotations

import hashlib
from urllib.parse import unquote_to_bytes

import msgspec

from tickwire.events import (
    KIND,
    BookDelta,
    BookSnapshot,
    Candle,
    Event,
    Gap,
    Quote,
    Trade,
)

#: The value of the encoding header this version writes (and the only one it reads).
ENCODING = "msgpack/1"
#: The header naming the payload's encoding.
ENCODING_HEADER = "Tickwire-Encoding"
#: JetStream's de-duplication header.
MSG_ID_HEADER = "Nats-Msg-Id"

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_BYTE = [chr(b) if b in _SAFE else f"%{b:02X}" for b in range(256)]

_encoder = msgspec.msgpack.Encoder()
_decoder: msgspec.msgpack.Decoder[Event] = msgspec.msgpack.Decoder(Event)
_id_encoder = msgspec.msgpack.Encoder()


def encode_token(text: str) -> str:
    """Make ``text`` one safe NATS subject token (reversible, see the module docstring)."""
    if text.isascii() and text.replace("-", "").replace("_", "").isalnum():
        return text
    return "".join([_BYTE[b] for b in text.encode("utf-8")])


def decode_token(token: str) -> str:
    """Undo :func:`encode_token`."""
    return unquote_to_bytes(token).decode("utf-8")


def subject_for(prefix: str, event: Event) -> str:
    """The subject ``event`` is published on under ``prefix``."""
    return (
        f"{prefix}.{KIND[type(event)]}.{encode_token(event.provider)}.{encode_token(event.symbol)}"
    )


def parse_subject(prefix: str, subject: str) -> tuple[str, str, str]:
    """``(kind, provider, symbol)`` of a subject made by :func:`subject_for`."""
    head = prefix + "."
    if not subject.startswith(head):
        raise ValueError(f"subject {subject!r} is not under {prefix!r}")
    parts = subject[len(head) :].split(".")
    if len(parts) != 3:
        raise ValueError(f"subject {subject!r} is not <prefix>.<kind>.<provider>.<symbol>")
    kind, provider, symbol = parts
    return kind, decode_token(provider), decode_token(symbol)


def encode(event: Event) -> bytes:
    """The ``msgpack/1`` payload of ``event``."""
    return _encoder.encode(event)


def decode(payload: bytes) -> Event:
    """The event a ``msgpack/1`` payload holds (raises :class:`msgspec.DecodeError`)."""
    return _decoder.decode(payload)


def identity(event: Event) -> tuple[object, ...]:
    """What makes two copies of ``event`` "the same message" on the bus.

    * trade: ``(provider, symbol, trade_id, ts)``, the stored key; a trade without an id adds
      its price, size and side (SPEC §6 gives such providers a derived id, so this is rare).
    * quote, book snapshot, book delta: every field but ``received_ts``. Two collectors that
      saw the same quote agree on all of them, and a different quote at the same ``ts`` is a
      different message (the store then keeps one row per key, as it does without the bus).
    * candle: ``(provider, symbol, interval, start)`` plus a *version*: every other field
      (OHLC, volume, trades, basis, closed, source). An updated candle (a forming one that
      moved, the closed one, a correction) has a new version and gets through; a replay of the
      same candle, or the copy from the redundant collector, has the same id and is dropped.
      A collector-local counter would not do: the two collectors of a pair count differently,
      so their copies would never be recognised as duplicates. The one case a content version
      gets wrong: a forming candle that returns, within the duplicate window, to exactly the
      state it had earlier is dropped; the next update or the closed candle supersedes it.
    * gap: ``(provider, symbol, kind, start, status)``: a gap changes status
      (``open`` → ``filled``/``empty``/``failed``, ``failed`` → ``filled``…) and each change
      gets through; the ``detail`` of a failed gap is not part of it.
    """
    cls = type(event)
    if cls is Trade:
        assert isinstance(event, Trade)
        if event.trade_id is not None:
            return ("trade", event.provider, event.symbol, event.trade_id, event.ts)
        return (
            "trade",
            event.provider,
            event.symbol,
            None,
            event.ts,
            event.price,
            event.size,
            event.side,
        )
    if cls is Candle:
        assert isinstance(event, Candle)
        return (
            "candle",
            event.provider,
            event.symbol,
            event.interval,
            event.start,
            event.open,
            event.high,
            event.low,
            event.close,
            event.volume,
            event.trades,
            event.basis,
            event.closed,
            event.source,
        )
    if cls is Gap:
        assert isinstance(event, Gap)
        return ("gap", event.provider, event.symbol, event.kind, event.start, event.status)
    if cls is Quote:
        assert isinstance(event, Quote)
        return (
            "quote",
            event.provider,
            event.symbol,
            event.ts,
            event.bid,
            event.bid_size,
            event.ask,
            event.ask_size,
        )
    if cls is BookSnapshot:
        assert isinstance(event, BookSnapshot)
        return (
            "book_snapshot",
            event.provider,
            event.symbol,
            event.ts,
            event.sequence,
            event.bids,
            event.asks,
        )
    assert isinstance(event, BookDelta)
    return ("book_delta", event.provider, event.symbol, event.ts, event.sequence, event.changes)


def message_id(event: Event) -> str:
    """The deterministic ``Nats-Msg-Id`` of ``event``: BLAKE2b-128 of :func:`identity`."""
    return hashlib.blake2b(_id_encoder.encode(identity(event)), digest_size=16).hexdigest()


__all__ = (
    "ENCODING",
    "ENCODING_HEADER",
    "MSG_ID_HEADER",
    "decode",
    "decode_token",
    "encode",
    "encode_token",
    "identity",
    "message_id",
    "parse_subject",
    "subject_for",
)
