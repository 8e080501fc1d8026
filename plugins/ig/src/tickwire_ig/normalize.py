"""The normalize stage: the bridge's JSON frames into Quotes, Trades, Candles and Gaps.

Frames (written by :mod:`tickwire_ig.connect` on the SDK thread):

* ``["u", item, is_snapshot, {field: value or null}]``: an update (all current values);
* ``["sub", key, symbols]`` / ``["suberr", key, code, message, symbols]``: subscription answers;
* ``["lost", item, count]``: updates lost (the SDK's ``onItemLostUpdates``, or our own queue
  overflowing): the window until the item's next update becomes a Gap;
* ``["hb"]``: the session is alive (the SDK's keep-alives are arriving).

Values are text or ``None`` (IG sends plenty of nulls: FX has no ``LTP``/``LTV``); prices are
parsed into :class:`~decimal.Decimal` from that text, never through float.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from tickwire.events import INTERVAL_NS, Candle, Gap, GapReason, Quote, Trade
from tickwire.protocols import Heartbeat, Item, MalformedFrame, Notice, Subscribed
from tickwire_ig.settings import CHART_SCALES, IGSettings

PROVIDER = "ig"
_MS = 1_000_000
_SCALE_TO_INTERVAL = {scale: interval for interval, scale in CHART_SCALES.items()}
_TWO = Decimal(2)


def price(value: Any, field: str) -> Decimal | None:
    """IG's text value as a Decimal (``None`` for null or empty); MalformedFrame if not a number."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise MalformedFrame(f"{field} is not text: {value!r}")
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise MalformedFrame(f"{field} is not a number: {value[:40]!r}") from None
    if not number.is_finite():
        raise MalformedFrame(f"{field} is not a finite number: {value[:40]!r}")
    return number


def millis(value: Any, field: str) -> int | None:
    """Epoch milliseconds (text) as nanoseconds."""
    if value is None or value == "":
        return None
    try:
        return int(value) * _MS
    except (TypeError, ValueError):
        raise MalformedFrame(f"{field} is not epoch milliseconds: {str(value)[:40]!r}") from None


def parse_item(item: str) -> tuple[str, str, str]:
    """``(type, epic, scale)`` of an IG item name (``scale`` is ``""`` for PRICE items)."""
    if item.startswith("PRICE:"):
        parts = item.split(":", 2)
        if len(parts) == 3 and parts[2]:
            return "PRICE", parts[2], ""
    elif item.startswith("CHART:"):
        epic, sep, scale = item[6:].rpartition(":")
        if sep and epic:
            return "CHART", epic, scale
    raise MalformedFrame(f"not an IG item name: {item[:60]!r}")


class IGNormalizer:
    """Turns one connection's frames into events (fresh per connection).

    :param settings: the source.
    :param pending: ``(symbol, kind) -> event time`` of the last event before this connection:
        the first event after it for that key reports the window between as a disconnect Gap.
    """

    def __init__(self, settings: IGSettings) -> None:
        self.settings = settings
        self.memory = settings.memory.last
        self.pending: dict[tuple[str, str], tuple[int, GapReason]] = {
            key: (ts, "disconnect") for key, ts in self.memory.items()
        }
        channels = set(settings.channels)
        self.tick_quotes = "quotes" in channels and settings.quote_item == "TICK"
        self.tick_trades = "trades" in channels
        self.bid_basis = settings.candle_basis == "bid"

    def __call__(self, frame: bytes | str, received_ts: int) -> Iterable[Item]:
        """Normalize one frame."""
        try:
            message = json.loads(frame)
        except ValueError:
            raise MalformedFrame("not a JSON frame") from None
        if not isinstance(message, list) or not message:
            raise MalformedFrame("not a frame of the IG bridge")
        tag = message[0]
        if tag == "u" and len(message) == 4 and isinstance(message[3], dict):
            return self.update(str(message[1]), message[3], received_ts)
        if tag == "hb":
            return [Heartbeat(PROVIDER)]
        if tag == "sub":
            return [Subscribed(PROVIDER, tuple(message[2]))]
        if tag == "suberr":
            _, key, code, text, symbols = message
            return [
                Notice(PROVIDER, f"{key} subscription refused: {text}", symbol=s, code=str(code))
                for s in symbols
            ]
        if tag == "lost":
            self.lost(str(message[1]))
            return []
        raise MalformedFrame(f"unknown frame {str(tag)[:20]!r}")

    # ---- gaps ----------------------------------------------------------------------------

    def lost(self, item: str) -> None:
        """Updates of ``item`` were lost: report the window until its next update."""
        kind, epic, scale = parse_item(item)
        keys = []
        if kind == "PRICE" or (scale == "TICK" and self.tick_quotes):
            keys.append((epic, "quotes"))
        elif scale in _SCALE_TO_INTERVAL:
            keys.append((epic, f"candles:{_SCALE_TO_INTERVAL[scale]}"))
        for key in keys:
            last = self.memory.get(key)
            if last is not None and key not in self.pending:
                self.pending[key] = (last, "sequence")

    def _seen(self, symbol: str, kind: str, ts: int, out: list[Item]) -> None:
        key = (symbol, kind)
        if self.pending:
            window = self.pending.pop(key, None)
            if window is not None and ts > window[0]:
                out.append(Gap(PROVIDER, symbol, kind, window[0], ts, window[1]))
        self.memory[key] = ts

    # ---- updates -------------------------------------------------------------------------

    def update(self, item: str, fields: dict[str, Any], received_ts: int) -> list[Item]:
        """The events one update stands for."""
        kind, epic, scale = parse_item(item)
        out: list[Item] = []
        if kind == "PRICE":
            bid = price(fields.get("BIDPRICE1"), "BIDPRICE1")
            ask = price(fields.get("ASKPRICE1"), "ASKPRICE1")
            if bid is None and ask is None:
                return out  # a closed or offline market: nothing to quote
            ts = millis(fields.get("TIMESTAMP"), "TIMESTAMP") or received_ts
            self._seen(epic, "quotes", ts, out)
            out.append(
                Quote(
                    PROVIDER,
                    epic,
                    ts,
                    received_ts,
                    bid,
                    price(fields.get("BIDSIZE1"), "BIDSIZE1"),
                    ask,
                    price(fields.get("ASKSIZE1"), "ASKSIZE1"),
                )
            )
            return out
        if scale == "TICK":
            ts = millis(fields.get("UTM"), "UTM") or received_ts
            if self.tick_quotes:
                bid = price(fields.get("BID"), "BID")
                ask = price(fields.get("OFR"), "OFR")
                if bid is not None or ask is not None:
                    self._seen(epic, "quotes", ts, out)
                    out.append(Quote(PROVIDER, epic, ts, received_ts, bid, None, ask, None))
            if self.tick_trades:
                last = price(fields.get("LTP"), "LTP")
                if last is not None:
                    size = price(fields.get("LTV"), "LTV")
                    out.append(Trade(PROVIDER, epic, ts, received_ts, last, size or Decimal(0)))
            return out
        interval = _SCALE_TO_INTERVAL.get(scale)
        if interval is None:
            raise MalformedFrame(f"not a CHART scale tickwire streams: {scale[:20]!r}")
        candle = self.candle(epic, interval, fields, received_ts)
        if candle is not None:
            self._seen(epic, f"candles:{interval}", candle.start, out)
            out.append(candle)
        return out

    def candle(
        self, epic: str, interval: Any, fields: dict[str, Any], received_ts: int
    ) -> Candle | None:
        """A CHART candle update as a streamed Candle (``None`` while it has no prices)."""
        values: list[Decimal] = []
        for part in ("OPEN", "HIGH", "LOW", "CLOSE"):
            bid = price(fields.get(f"BID_{part}"), f"BID_{part}")
            ofr = price(fields.get(f"OFR_{part}"), f"OFR_{part}")
            if self.bid_basis:
                if bid is None:
                    return None
                values.append(bid)
            else:
                if bid is None or ofr is None:
                    return None
                values.append((bid + ofr) / _TWO)
        o, h, low, c = values
        if not (low <= min(o, c) and max(o, c) <= h):
            raise MalformedFrame(f"candle for {epic} has low/high outside open/close")
        ts = millis(fields.get("UTM"), "UTM") or received_ts
        length = INTERVAL_NS[interval]
        return Candle(
            PROVIDER,
            epic,
            interval,
            ts // length * length,
            o,
            h,
            low,
            c,
            volume=price(fields.get("LTV"), "LTV"),
            trades=None,
            basis="bid" if self.bid_basis else "mid",
            closed=fields.get("CONS_END") == "1",
            source="stream",
        )


__all__ = ("PROVIDER", "IGNormalizer", "millis", "parse_item", "price")
