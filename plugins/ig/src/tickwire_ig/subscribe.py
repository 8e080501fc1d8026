"""The subscribe stage: IG item names, fields and modes for a connection's epics.

One SDK subscription per item type (IG: "each subscription may only contain items of one
type"), holding that type's item for every epic of the connection:

* quotes: ``PRICE:<accountId>:<epic>`` (MERGE, data adapter ``Pricing``), or ``CHART:<epic>:TICK``
  when ``quote_item = "TICK"``;
* trades: ``CHART:<epic>:TICK`` (DISTINCT; ``LTP``/``LTV`` are null for FX and CFDs);
* candles: ``CHART:<epic>:<SECOND|1MINUTE|5MINUTE|HOUR>`` (MERGE) per ``candle_intervals``.

The retired ``MARKET:<epic>`` items (decommissioned 2026-05-08) are never used.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from tickwire.protocols import Connection
from tickwire_ig.settings import CHART_SCALES, IGSettings

PRICE_FIELDS = ("BIDPRICE1", "ASKPRICE1", "BIDSIZE1", "ASKSIZE1", "TIMESTAMP", "DLG_FLAG")
TICK_FIELDS = ("BID", "OFR", "LTP", "LTV", "UTM")
CANDLE_FIELDS = (
    "BID_OPEN",
    "BID_HIGH",
    "BID_LOW",
    "BID_CLOSE",
    "OFR_OPEN",
    "OFR_HIGH",
    "OFR_LOW",
    "OFR_CLOSE",
    "LTV",
    "UTM",
    "CONS_END",
    "CONS_TICK_COUNT",
)


def subscriptions(
    settings: IGSettings, account_id: str, symbols: Sequence[str]
) -> list[dict[str, Any]]:
    """The subscribe messages for ``symbols`` on a session of ``account_id``."""
    channels = set(settings.channels)
    specs: list[dict[str, Any]] = []
    if "quotes" in channels and settings.quote_item == "PRICE":
        specs.append(
            {
                "key": "quotes",
                "mode": "MERGE",
                "items": [f"PRICE:{account_id}:{epic}" for epic in symbols],
                "fields": list(PRICE_FIELDS),
                "adapter": "Pricing",
                "snapshot": "yes",
            }
        )
    if "trades" in channels or ("quotes" in channels and settings.quote_item == "TICK"):
        specs.append(
            {
                "key": "ticks",
                "mode": "DISTINCT",
                "items": [f"CHART:{epic}:TICK" for epic in symbols],
                "fields": list(TICK_FIELDS),
                "snapshot": "no",
            }
        )
    if "candles" in channels:
        for interval in settings.candle_intervals:
            scale = CHART_SCALES[interval]
            specs.append(
                {
                    "key": f"candles:{interval}",
                    "mode": "MERGE",
                    "items": [f"CHART:{epic}:{scale}" for epic in symbols],
                    "fields": list(CANDLE_FIELDS),
                    "snapshot": "yes",
                }
            )
    for spec in specs:
        spec["op"] = "subscribe"
        spec["symbols"] = list(symbols)
    return specs


class IGSubscriber:
    """Subscribes a fresh session's epics (the SDK re-sends them itself after a recovery)."""

    def __init__(self, settings: IGSettings) -> None:
        self.settings = settings

    async def subscribe(self, conn: Connection, symbols: Sequence[str]) -> None:
        """Send one subscribe message per item type."""
        account_id = str(getattr(conn, "account_id", "") or "")
        for spec in subscriptions(self.settings, account_id, symbols):
            await conn.send(json.dumps(spec))


__all__ = ("CANDLE_FIELDS", "PRICE_FIELDS", "TICK_FIELDS", "IGSubscriber", "subscriptions")
