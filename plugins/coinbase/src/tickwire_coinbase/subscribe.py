"""The subscribe stage: one ``subscribe`` message per connection, signed when keys are set."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable, Sequence

import msgspec

from tickwire.protocols import Connection
from tickwire_coinbase.settings import CoinbaseSettings

#: tickwire channel → Coinbase Exchange feed channel (``book`` depends on the settings).
CHANNELS = {"trades": "matches", "quotes": "ticker"}
#: What the signature covers for the websocket feed (Coinbase's fixed "request").
VERIFY_PATH = "/users/self/verify"


def sign(timestamp: str, secret_b64: str) -> str:
    """base64(HMAC-SHA256(base64decode(secret), timestamp + "GET" + "/users/self/verify"))."""
    key = base64.b64decode(secret_b64)
    digest = hmac.new(key, (timestamp + "GET" + VERIFY_PATH).encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class CoinbaseSubscriber:
    """Sends ``{"type": "subscribe", "product_ids": [...], "channels": [...]}`` once.

    Channel names are strings with the products at the root (channel objects with empty
    ``product_ids`` are refused by Coinbase); ``heartbeat`` is always added, so the core sees
    liveness and the last trade id per product. The credentials stay inside the settings'
    :class:`~pydantic.SecretStr` until the message is built; ``repr`` never shows them.
    """

    __slots__ = ("_clock", "_settings")

    def __init__(self, settings: CoinbaseSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock

    def __repr__(self) -> str:
        auth = "signed" if self._settings.authenticated else "public"
        return f"CoinbaseSubscriber({self.channels()!r}, {auth})"

    def channels(self) -> list[str]:
        """The feed channels this source subscribes, in a stable order."""
        wanted = self._settings.channels
        names = [CHANNELS[c] for c in ("trades", "quotes") if c in wanted]
        if "book" in wanted:
            names.append(self._settings.book_channel)
        names.append("heartbeat")
        return names

    def message(self, symbols: Sequence[str]) -> dict[str, object]:
        """The subscribe message for ``symbols`` (signed when credentials are set)."""
        msg: dict[str, object] = {
            "type": "subscribe",
            "product_ids": list(symbols),
            "channels": self.channels(),
        }
        s = self._settings
        if s.api_key is not None and s.api_secret is not None and s.passphrase is not None:
            timestamp = f"{self._clock():.3f}"  # a JSON string: numbers are refused
            msg["signature"] = sign(timestamp, s.api_secret.get_secret_value())
            msg["key"] = s.api_key.get_secret_value()
            msg["passphrase"] = s.passphrase.get_secret_value()
            msg["timestamp"] = timestamp
        return msg

    async def subscribe(self, conn: Connection, symbols: Sequence[str]) -> None:
        """Send the one subscribe message for this connection's ``symbols``."""
        await conn.send(msgspec.json.encode(self.message(symbols)).decode())


__all__ = ("CHANNELS", "VERIFY_PATH", "CoinbaseSubscriber", "sign")
