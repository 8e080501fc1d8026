"""A fake Coinbase Exchange for tests, demos and plugin authors.

``FakeCoinbase`` serves the websocket feed and the REST history endpoints on 127.0.0.1 with a
deterministic market; test controls publish trades, withhold trade ids, drop connections, send
malformed frames, reject handshakes, rate-limit REST and stall the feed. ``read_capture`` reads
the recorded-traffic format of ``shared/data``. ``python -m tickwire_coinbase.testing`` runs one.
"""

from tickwire_coinbase.testing.server import (
    FakeCoinbase as FakeCoinbase,
)
from tickwire_coinbase.testing.server import (
    FakeTrade as FakeTrade,
)
from tickwire_coinbase.testing.server import (
    read_capture as read_capture,
)

__all__ = ("FakeCoinbase", "FakeTrade", "read_capture")
