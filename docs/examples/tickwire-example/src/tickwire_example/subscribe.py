"""The subscribe stage: one subscribe message per connection (and again after a reconnect)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from tickwire.protocols import Connection
from tickwire_example.settings import ExampleSettings


class ExampleSubscriber:
    """Sends ``{"op": "subscribe", "symbols": [...], "channels": [...]}``."""

    def __init__(self, source: ExampleSettings) -> None:
        self.channels = sorted(source.channels)
        self._key = source.api_key

    async def subscribe(self, conn: Connection, symbols: Sequence[str]) -> None:
        """Subscribe every symbol of this connection to the source's channels."""
        message: dict[str, object] = {
            "op": "subscribe",
            "symbols": list(symbols),
            "channels": self.channels,
        }
        if self._key is not None:
            message["key"] = self._key.get_secret_value()
        await conn.send(json.dumps(message))


__all__ = ("ExampleSubscriber",)
