"""Gap detection shared by every provider: trade-id holes, heartbeats and disconnect windows.

* **sequence**: for providers whose trade ids go up by one per symbol
  (``Capabilities.trade_ids == "sequential"``), a trade whose id jumps past ``last + 1`` means
  trades were missed between the two; a heartbeat whose ``last_trade_id`` stays ahead of the
  last trade received for a whole heartbeat period means the same.
* **disconnect**: for the others, the window from the last event before a connection dropped
  to the first event after it came back, per symbol.

Each finding is a :class:`~tickwire.events.Gap` event: stored by the sinks and handed to the
provider's backfill hook.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tickwire.events import Event, Gap, GapReason, Trade
from tickwire.protocols import Heartbeat


class GapDetector:
    """Finds missing trades for one provider.

    :param provider: the provider name events carry.
    :param sequential: trade ids are integers that go up by one per symbol.
    """

    __slots__ = ("_down", "_last_id", "_last_ts", "_pending_hb", "provider", "sequential")

    def __init__(self, provider: str, *, sequential: bool) -> None:
        self.provider = provider
        self.sequential = sequential
        self._last_id: dict[str, int] = {}
        self._last_ts: dict[str, int] = {}
        self._down: dict[str, int] = {}
        self._pending_hb: dict[str, int] = {}

    def process(self, events: Sequence[Event]) -> list[Gap]:
        """Look at a batch of events; return the gaps they reveal."""
        gaps: list[Gap] = []
        last_id = self._last_id
        last_ts = self._last_ts
        down = self._down
        for event in events:
            if type(event) is not Trade:
                continue
            assert isinstance(event, Trade)
            symbol = event.symbol
            since = down.pop(symbol, None) if down else None
            if since is not None and not self.sequential and event.ts > since:
                gaps.append(Gap(self.provider, symbol, "trades", since, event.ts, "disconnect"))
            if self.sequential and event.trade_id is not None:
                try:
                    tid = int(event.trade_id)
                except ValueError:
                    tid = None
                if tid is not None:
                    prev = last_id.get(symbol)
                    if prev is not None and tid > prev + 1:
                        start = last_ts.get(symbol, event.ts)
                        reason: GapReason = "disconnect" if since is not None else "sequence"
                        gaps.append(Gap(self.provider, symbol, "trades", start, event.ts, reason))
                    if prev is None or tid > prev:
                        last_id[symbol] = tid
                        last_ts[symbol] = event.ts
                    self._pending_hb.pop(symbol, None)
                    continue
            if event.ts > last_ts.get(symbol, 0):
                last_ts[symbol] = event.ts
        return gaps

    def heartbeat(self, hb: Heartbeat, now_ns: int) -> list[Gap]:
        """A heartbeat whose ``last_trade_id`` stays ahead of what arrived reveals a gap.

        The first heartbeat ahead is only noted (its trade may be on the way on another
        channel); if the next one is still ahead, the gap is reported from the last trade
        received to now, and the trade-id count is moved on so it is reported once.
        """
        if not self.sequential or hb.symbol is None or hb.last_trade_id is None:
            return []
        try:
            advertised = int(hb.last_trade_id)
        except ValueError:
            return []
        symbol = hb.symbol
        prev = self._last_id.get(symbol)
        if prev is None or advertised <= prev:
            self._pending_hb.pop(symbol, None)
            return []
        if symbol not in self._pending_hb:
            self._pending_hb[symbol] = advertised
            return []
        self._pending_hb.pop(symbol, None)
        start = self._last_ts.get(symbol, now_ns)
        end = hb.ts if hb.ts is not None and hb.ts > start else now_ns
        self._last_id[symbol] = advertised
        self._last_ts[symbol] = end
        return [Gap(self.provider, symbol, "trades", start, end, "sequence")]

    def disconnected(self, symbols: Iterable[str], now_ns: int) -> None:
        """A connection carrying ``symbols`` dropped: open a disconnect window for each."""
        for symbol in symbols:
            self._down.setdefault(symbol, self._last_ts.get(symbol, now_ns))


__all__ = ("GapDetector",)
