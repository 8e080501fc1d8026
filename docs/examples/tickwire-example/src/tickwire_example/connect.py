"""The connect stage: one websocket per connection the runner plans.

The runner owns everything around it (backoff, stall detection, reconnects): this module only
says how to open a connection.
"""

from __future__ import annotations

from tickwire.transport import WebSocketConnector
from tickwire_example.settings import ExampleSettings


def connector_for(source: ExampleSettings) -> WebSocketConnector:
    """A :class:`~tickwire.transport.WebSocketConnector` for ``source.ws_url``."""
    return WebSocketConnector(source.ws_url, ca_file=source.ca_file)


__all__ = ("connector_for",)
