"""The normalize stage: the frames the watch loops hand off, as tickwire events.

Frames are JSON objects written by :mod:`tickwire_ccxtpro.subscribe`, numbers as text, times in
ms (``rt``: local receive time in ns, taken when ccxt returned the rows)::

    {"k": "t", "s": sym, "rt": ns, "r": [[id, ts_ms, price, amount, side], ...]}    trades
    {"k": "c", "s": sym, "i": "1m", "rt": ns, "r": [[ts, o, h, l, c, v, closed], ...]}
    {"k": "q", "s": sym, "rt": ns, "r": [ts, bid, bid_size, ask, ask_size]}          ticker
    {"k": "b", "s": sym, "rt": ns, "ts": ms, "n": nonce, "b": [[p, a]...], "a": [...]}
    {"k": "g", "s": sym, "kind": "book", "start": ns, "end": ns, "reason": "sequence"}
    {"k": "n", "s": sym, "m": "BadSymbol: ..."}                                      notice
    {"k": "h"}                                                                      heartbeat

Anything else (a frame ccxt itself could not read, passed on as it came) is malformed.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from tickwire.events import (
    BookSnapshot,
    Candle,
    Gap,
    Interval,
    Quote,
    Trade,
)
from tickwire.protocols import Frame, Heartbeat, Item, MalformedFrame, Notice

_MS = 1_000_000
_SIDES = {"buy": "buy", "sell": "sell"}


def _dec(text: Any) -> Decimal | None:
    return None if text is None else Decimal(text)


class CcxtNormalizer:
    """Turns one hand-off frame into events (a fresh one per connection)."""

    def __init__(self, provider: str) -> None:
        self.provider = provider

    def __call__(self, frame: Frame, received_ts: int) -> list[Item]:
        """Normalize one frame; raise :class:`MalformedFrame` for anything unreadable."""
        try:
            msg = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            raise MalformedFrame(f"not JSON: {exc}") from None
        if not isinstance(msg, dict) or "k" not in msg:
            raise MalformedFrame("not a frame of the ccxt watch loops")
        try:
            return self._items(msg, received_ts)
        except (KeyError, TypeError, ValueError, IndexError, InvalidOperation) as exc:
            raise MalformedFrame(
                f"bad {msg.get('k')!r} frame: {type(exc).__name__}: {exc}"
            ) from None

    def _items(self, msg: dict[str, Any], received_ts: int) -> list[Item]:
        kind = msg["k"]
        provider = self.provider
        received = msg.get("rt", received_ts)
        if kind == "t":
            symbol = msg["s"]
            dec = Decimal
            sides = _SIDES
            out: list[Item] = []
            for tid, ts, price, amount, side in msg["r"]:
                out.append(
                    Trade(
                        provider,
                        symbol,
                        int(ts) * _MS,
                        received,
                        dec(price),
                        dec(amount),
                        sides.get(side),  # type: ignore[arg-type]
                        None if tid is None else str(tid),
                    )
                )
            return out
        if kind == "c":
            symbol = msg["s"]
            interval: Interval = msg["i"]
            return [
                Candle(
                    provider,
                    symbol,
                    interval,
                    int(ts) * _MS,
                    Decimal(o),
                    Decimal(h),
                    Decimal(lo),
                    Decimal(c),
                    _dec(v),
                    None,
                    "trade",
                    bool(closed),
                    "stream",
                )
                for ts, o, h, lo, c, v, closed in msg["r"]
            ]
        if kind == "q":
            ts, bid, bid_size, ask, ask_size = msg["r"]
            return [
                Quote(
                    provider,
                    msg["s"],
                    int(ts) * _MS,
                    received,
                    _dec(bid),
                    _dec(bid_size),
                    _dec(ask),
                    _dec(ask_size),
                )
            ]
        if kind == "b":
            nonce = msg.get("n")
            return [
                BookSnapshot(
                    provider,
                    msg["s"],
                    int(msg["ts"]) * _MS,
                    received,
                    [(Decimal(p), Decimal(a)) for p, a in msg["b"]],
                    [(Decimal(p), Decimal(a)) for p, a in msg["a"]],
                    int(nonce) if isinstance(nonce, int) else None,
                )
            ]
        if kind == "g":
            return [
                Gap(
                    provider,
                    msg["s"],
                    msg["kind"],
                    int(msg["start"]),
                    int(msg["end"]),
                    msg["reason"],
                )
            ]
        if kind == "h":
            return [Heartbeat(provider)]
        if kind == "n":
            return [Notice(provider, str(msg["m"]), symbol=msg.get("s"))]
        raise MalformedFrame(f"unknown frame kind {kind!r}")


__all__ = ("CcxtNormalizer",)
