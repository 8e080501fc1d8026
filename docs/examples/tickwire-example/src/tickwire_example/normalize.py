"""The normalize stage: one raw frame in, tickwire events and control items out.

Pure and synchronous: no I/O, no clock other than the ``received_ts`` it is given. Prices are
parsed from the JSON text straight into ``Decimal`` (msgspec), never through float.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Literal

import msgspec

from tickwire.events import Quote, Trade
from tickwire.protocols import Frame, Heartbeat, Item, MalformedFrame, Notice, Subscribed

PROVIDER = "example"
_MS = 1_000_000


class _Trade(msgspec.Struct, tag="trade"):
    symbol: str
    id: int
    price: Decimal
    size: Decimal
    side: Literal["buy", "sell"]
    time: int  # Unix milliseconds


class _Quote(msgspec.Struct, tag="quote"):
    symbol: str
    bid: Decimal
    bid_size: Decimal
    ask: Decimal
    ask_size: Decimal
    time: int


class _Heartbeat(msgspec.Struct, tag="heartbeat"):
    time: int


class _Subscribed(msgspec.Struct, tag="subscribed"):
    symbols: list[str]


class _Error(msgspec.Struct, tag="error"):
    message: str
    symbol: str | None = None


_Message = _Trade | _Quote | _Heartbeat | _Subscribed | _Error
_decode = msgspec.json.Decoder(_Message).decode


class ExampleNormalizer:
    """Turns Example Exchange frames into events; one instance per connection."""

    def __call__(self, frame: Frame, received_ts: int) -> Iterable[Item]:
        """Normalize one frame (raise :class:`MalformedFrame` for one it cannot read)."""
        try:
            msg = _decode(frame)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise MalformedFrame(str(exc)) from None
        if isinstance(msg, _Trade):
            return (
                Trade(
                    PROVIDER,
                    msg.symbol,
                    msg.time * _MS,
                    received_ts,
                    msg.price,
                    msg.size,
                    msg.side,  # the taker side, as the feed documents it
                    str(msg.id),
                ),
            )
        if isinstance(msg, _Quote):
            return (
                Quote(
                    PROVIDER,
                    msg.symbol,
                    msg.time * _MS,
                    received_ts,
                    msg.bid,
                    msg.bid_size,
                    msg.ask,
                    msg.ask_size,
                ),
            )
        if isinstance(msg, _Heartbeat):
            return (Heartbeat(PROVIDER, ts=msg.time * _MS),)
        if isinstance(msg, _Subscribed):
            return (Subscribed(PROVIDER, tuple(msg.symbols)),)
        return (Notice(PROVIDER, msg.message, symbol=msg.symbol),)


__all__ = ("PROVIDER", "ExampleNormalizer")
