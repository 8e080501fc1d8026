"""The subscribe stage: ``{"type":"subscribe","symbol":S}``, one message per symbol.

Finnhub sends no acknowledgement: success is silent, failures come back as ``error`` messages
(the normalizer turns them into notices). The runner paces the sends by the provider's
``messages_per_second`` when one is declared (Finnhub documents none).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from tickwire.protocols import Connection

_encoder = msgspec.json.Encoder()


def subscribe_message(symbol: str) -> str:
    """The subscribe message for one symbol (passed through verbatim: case and spaces kept)."""
    return _encoder.encode({"type": "subscribe", "symbol": symbol}).decode()


def unsubscribe_message(symbol: str) -> str:
    """The unsubscribe message for one symbol (frees a slot of the plan's symbol limit)."""
    return _encoder.encode({"type": "unsubscribe", "symbol": symbol}).decode()


class FinnhubSubscriber:
    """Subscribes each of a connection's symbols with its own message."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "FinnhubSubscriber()"

    async def subscribe(self, conn: Connection, symbols: Sequence[str]) -> None:
        """Send one ``subscribe`` per symbol, in order."""
        for symbol in symbols:
            await conn.send(subscribe_message(symbol))


__all__ = ("FinnhubSubscriber", "subscribe_message", "unsubscribe_message")
