"""The connect stage: one websocket per connection to the Exchange feed."""

from __future__ import annotations

from tickwire.transport import WebSocketConnector
from tickwire_coinbase.settings import CoinbaseSettings

#: Level 2 snapshots of busy books run to megabytes.
MAX_FRAME = 64 * 1024 * 1024


def connector_for(source: CoinbaseSettings) -> WebSocketConnector:
    """A :class:`~tickwire.transport.WebSocketConnector` for ``source.ws_url``.

    Compression (permessage-deflate, which Coinbase supports) is off unless
    ``compression = true``: it saves bandwidth on book channels but costs CPU on every frame.
    ``transport`` picks the websocket library (``picows`` has no compression).
    """
    return WebSocketConnector(
        source.ws_url,
        max_size=MAX_FRAME,
        compression="deflate" if source.compression else None,
        ca_file=source.ca_file,
        transport=source.transport,
    )


__all__ = ("connector_for",)
