"""Hypothesis strategies for tickwire events (needs ``tickwire[testing]``)."""

from __future__ import annotations

from decimal import Decimal
from typing import cast

from hypothesis import strategies as st

from tickwire.events import INTERVAL_NS, Candle, Interval, Quote, Trade

#: Event times from 2000 to 2100, in nanoseconds.
timestamps = st.integers(min_value=946_684_800 * 10**9, max_value=4_102_444_800 * 10**9)

#: Positive prices with up to 12 decimal places, as exchanges send them (trailing zeros too).
prices = st.decimals(
    min_value=Decimal("0.000000000001"),
    max_value=Decimal("10000000"),
    places=12,
    allow_nan=False,
    allow_infinity=False,
).map(lambda d: d.normalize() if d.as_tuple().exponent != -12 else d)

#: Non-negative sizes.
sizes = st.decimals(
    min_value=Decimal(0),
    max_value=Decimal("1000000"),
    places=8,
    allow_nan=False,
    allow_infinity=False,
)

symbols = st.sampled_from(["BTC-USD", "ETH-USD", "OANDA:EUR_USD", "BTC/USDT", "CS.D.EURUSD.CFD.IP"])


@st.composite
def trades(draw: st.DrawFn, provider: str = "test", symbol: str | None = None) -> Trade:
    """One valid trade."""
    ts = draw(timestamps)
    return Trade(
        provider=provider,
        symbol=symbol or draw(symbols),
        ts=ts,
        received_ts=ts + draw(st.integers(0, 10**9)),
        price=draw(prices),
        size=draw(sizes),
        side=draw(st.sampled_from(["buy", "sell", None])),
        trade_id=draw(st.one_of(st.none(), st.integers(0, 2**53).map(str))),
    )


@st.composite
def quotes(draw: st.DrawFn, provider: str = "test") -> Quote:
    """One valid quote (bid below ask)."""
    ts = draw(timestamps)
    bid = draw(prices)
    return Quote(
        provider,
        draw(symbols),
        ts,
        ts,
        bid,
        draw(st.none() | sizes),
        bid + draw(prices),
        draw(st.none() | sizes),
    )


@st.composite
def candles(draw: st.DrawFn, provider: str = "test") -> Candle:
    """One valid candle: low <= open, close <= high, bucket-aligned start."""
    interval = cast(Interval, draw(st.sampled_from(sorted(INTERVAL_NS))))
    ts = draw(timestamps)
    start = ts - ts % INTERVAL_NS[interval]
    values = sorted(draw(st.lists(prices, min_size=4, max_size=4)))
    low, a, b, high = values
    open_, close = (a, b) if draw(st.booleans()) else (b, a)
    return Candle(
        provider,
        draw(symbols),
        interval,
        start,
        open_,
        high,
        low,
        close,
        draw(st.none() | sizes),
        draw(st.none() | st.integers(1, 10**6)),
    )


events = st.one_of(trades(), quotes(), candles())

__all__ = ("candles", "events", "prices", "quotes", "sizes", "symbols", "timestamps", "trades")
