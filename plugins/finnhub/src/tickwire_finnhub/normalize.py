"""The normalize stage: Finnhub websocket messages in, trades and control items out.

Messages (see the protocol notes, §3.3):

* ``{"type":"trade","data":[{"s","p","t","v","c"}, ...]}``: one message may hold several
  prints of several symbols. ``p`` and ``v`` are JSON *numbers*; they are decoded by msgspec
  straight into :class:`~decimal.Decimal` from the number's text, never through float. ``t``
  is Unix **milliseconds**.

  - ``v == 0`` is a *price-only update* ("trades might not be available for some forex and
    crypto exchanges; a price update will be sent with volume = 0"): it is not a trade and has
    no bid or ask, so no tickwire event fits it. It is never emitted as a zero-size trade: it
    becomes a per-symbol :class:`~tickwire.protocols.Heartbeat` (the symbol is alive; nothing
    is stored) and is counted in :attr:`FinnhubNormalizer.price_updates`.
  - ``c`` (trade conditions: a list of string codes, ``null`` or absent) has no field in
    :class:`~tickwire.events.Trade`; it is part of the derived ``trade_id``, then dropped.
  - Finnhub has no trade ids: :func:`derive_trade_id` makes a stable one from the content
    plus the occurrence index of identical prints within the message (SPEC §6).

* ``{"type":"ping"}`` → ``Heartbeat(provider, None)`` (connection-wide liveness).
* ``{"type":"error","msg":...}`` → :class:`~tickwire.protocols.Notice`; not fatal, the other
  symbols go on. ``Invalid symbol <S>`` names its symbol when Finnhub includes it;
  ``Subscribing to too many symbols`` does not name one.
* ``news`` / ``pr`` (never subscribed by this plugin) are ignored.

Anything else, or anything unreadable, raises :class:`~tickwire.protocols.MalformedFrame`; no
other exception leaves the normalizer. A trade message with one unreadable print is refused
whole (the dead-letter file keeps it), so a replay of the message still gives the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

import msgspec

from tickwire.events import Trade
from tickwire.protocols import Frame, Heartbeat, Item, MalformedFrame, Notice

PROVIDER = "finnhub"
NS_PER_MS = 1_000_000
_ZERO = Decimal(0)
_IGNORED = frozenset({"news", "pr"})
_INVALID_SYMBOL = "invalid symbol"
_TOO_MANY = "too many symbols"


class _Print(msgspec.Struct, gc=False):
    s: str
    p: Decimal
    t: int
    v: Decimal
    c: list[str | int] | None = None


class _TradeMsg(msgspec.Struct, tag_field="type", tag="trade", gc=False):
    data: list[_Print]


class _PingMsg(msgspec.Struct, tag_field="type", tag="ping", gc=False):
    pass


class _ErrorMsg(msgspec.Struct, tag_field="type", tag="error", gc=False):
    msg: str = ""


class _Envelope(msgspec.Struct, gc=False):
    type: str


_decoder: msgspec.json.Decoder[_TradeMsg | _PingMsg | _ErrorMsg] = msgspec.json.Decoder(
    _TradeMsg | _PingMsg | _ErrorMsg
)
_envelope: msgspec.json.Decoder[_Envelope] = msgspec.json.Decoder(_Envelope)


def derive_trade_id(t_ms: int, price: Decimal, size: Decimal, conditions: str, n: int) -> str:
    """The stable id of a Finnhub print: ``<t ms>:<price>:<size>:<conditions>:<n>``.

    ``price`` and ``size`` are written as Finnhub sent them (the Decimal keeps the number's
    text); ``conditions`` is the codes joined by ``,`` (empty for ``null``/absent/``[]``);
    ``n`` counts the identical prints (same symbol, time, price, size and conditions) before
    this one in the same message. Identical prints in one message are therefore distinct
    trades, while a replay of the message yields the same ids (and the sinks' unique key on
    ``provider, symbol, trade_id, ts`` stores it once). An identical print repeated in a
    *later* message gets the same id and is taken for a replay.
    """
    return f"{t_ms}:{price}:{size}:{conditions}:{n}"


def _notice(text: str) -> Notice:
    lowered = text.lower()
    if lowered.startswith(_INVALID_SYMBOL):
        rest = text[len(_INVALID_SYMBOL) :].strip(" :")
        return Notice(PROVIDER, text or "error", symbol=rest or None, code="invalid_symbol")
    if _TOO_MANY in lowered:
        return Notice(PROVIDER, text, code="too_many_symbols")
    return Notice(PROVIDER, text or "error (no message)")


class FinnhubNormalizer:
    """Turns one Finnhub frame into events; one instance per connection.

    :attr price_updates: how many ``v == 0`` price-only updates this connection carried.
    """

    __slots__ = ("price_updates",)

    def __init__(self) -> None:
        self.price_updates = 0

    def __repr__(self) -> str:
        return "FinnhubNormalizer()"

    def __call__(self, frame: Frame, received_ts: int) -> Iterable[Item]:
        """Normalize ``frame`` (received at ``received_ts`` ns)."""
        try:
            msg = _decoder.decode(frame)
        except msgspec.DecodeError as exc:
            problem = _unreadable(frame, exc)
            if problem is None:
                return ()
            raise problem from None
        if type(msg) is _TradeMsg:
            assert isinstance(msg, _TradeMsg)
            return self._trades(msg, received_ts)
        if type(msg) is _PingMsg:
            return (Heartbeat(PROVIDER, None),)
        assert isinstance(msg, _ErrorMsg)
        return (_notice(msg.msg),)

    def _trades(self, msg: _TradeMsg, received_ts: int) -> list[Item]:
        out: list[Item] = []
        seen: dict[tuple[str, int, str, str, str], int] = {}
        for row in msg.data:
            price, size, t = row.p, row.v, row.t
            if not (price.is_finite() and size.is_finite()):
                raise MalformedFrame(f"print of {row.s!r} has a non-finite price or size")
            if t < 0:
                raise MalformedFrame(f"print of {row.s!r} has a negative time {t}")
            if not row.s:
                raise MalformedFrame("print without a symbol")
            if size.is_zero():
                self.price_updates += 1
                out.append(Heartbeat(PROVIDER, row.s, t * NS_PER_MS))
                continue
            if size < _ZERO or price <= _ZERO:
                raise MalformedFrame(f"print of {row.s!r} has price {price} and size {size}")
            conditions = ",".join(str(c) for c in row.c) if row.c else ""
            key = (row.s, t, str(price), str(size), conditions)
            n = seen.get(key, 0)
            seen[key] = n + 1
            out.append(
                Trade(
                    PROVIDER,
                    row.s,
                    t * NS_PER_MS,
                    received_ts,
                    price,
                    size,
                    None,
                    derive_trade_id(t, price, size, conditions, n),
                )
            )
        return out


def _unreadable(frame: Frame, exc: msgspec.DecodeError) -> MalformedFrame | None:
    """Why a frame that did not decode is malformed; ``None`` for a type to ignore."""
    try:
        kind = _envelope.decode(frame).type
    except msgspec.DecodeError:
        return MalformedFrame(f"not a finnhub message: {exc}")
    if kind in _IGNORED:
        return None
    if kind in ("trade", "ping", "error"):
        return MalformedFrame(f"unreadable {kind} message: {exc}")
    return MalformedFrame(f"unknown message type {kind!r}")


__all__ = ("PROVIDER", "FinnhubNormalizer", "derive_trade_id")
