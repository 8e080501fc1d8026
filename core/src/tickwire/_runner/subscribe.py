"""The subscribe stage: planning connections by the provider's limits, and pacing sends.

:func:`plan_connections` splits a source's symbols over as many connections as the provider's
``symbols_per_connection`` requires, and refuses at start-up a plan that breaks
``connections_per_key`` or ``max_symbols`` (with a message that says what to change).
:class:`PacedConnection` spaces the client's messages by ``messages_per_second``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import anyio

from tickwire.protocols import Connection, Frame, ProviderInfo
from tickwire.settings import ConfigError, SourceSettings


def plan_connections(
    source: SourceSettings, info: ProviderInfo, where: str = "config"
) -> list[list[str]]:
    """Split ``source.symbols`` into per-connection groups within ``info.limits``."""
    limits = info.limits
    symbols = list(source.symbols)
    per_conn = getattr(source, "symbols_per_connection", None) or limits.symbols_per_connection
    max_symbols = getattr(source, "max_symbols", None) or limits.max_symbols
    if max_symbols is not None and len(symbols) > max_symbols:
        raise ConfigError(
            f"{where}: source {source.label!r} lists {len(symbols)} symbols, but "
            f"{info.name} allows at most {max_symbols} per credential; "
            "remove symbols or raise the plan's limit in the provider's settings"
        )
    if not per_conn:
        return [symbols]
    groups = [symbols[i : i + per_conn] for i in range(0, len(symbols), per_conn)]
    if limits.connections_per_key is not None and len(groups) > limits.connections_per_key:
        raise ConfigError(
            f"{where}: source {source.label!r} needs {len(groups)} connections for "
            f"{len(symbols)} symbols ({per_conn} per connection), but {info.name} allows "
            f"{limits.connections_per_key} per credential; list fewer symbols or use another key"
        )
    return groups


class PacedConnection:
    """A :class:`~tickwire.protocols.Connection` whose ``send`` keeps to a message rate.

    A token bucket holding one second's worth of messages: a burst of that size goes out at
    once, then sends are spaced ``1 / rate`` apart.
    """

    def __init__(self, conn: Connection, rate: float | None) -> None:
        self._conn = conn
        self._rate = rate
        self._tokens = float(max(1, int(rate))) if rate else 0.0
        self._stamp = time.monotonic()

    async def send(self, message: Frame) -> None:
        """Send, first waiting for the rate to allow it."""
        rate = self._rate
        if rate:
            now = time.monotonic()
            burst = max(1.0, float(int(rate)))
            self._tokens = min(burst, self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            if self._tokens < 1:
                wait = (1 - self._tokens) / rate
                await anyio.sleep(wait)
                self._tokens = 1.0
                self._stamp = time.monotonic()
            self._tokens -= 1
        await self._conn.send(message)

    def __aiter__(self) -> AsyncIterator[Frame]:
        """The underlying connection's frames."""
        return self._conn.__aiter__()

    def __getattr__(self, name: str) -> object:
        return getattr(self._conn, name)


__all__ = ("PacedConnection", "plan_connections")
