"""Hypothesis strategies for tickwire events (local until ``tickwire.testing`` ships its own)."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import strategies as st

from tickwire.events import INTERVAL_NS, BookDelta, BookSnapshot, Candle, Event, Gap, Quote, Trade

T0 = 1_700_000_000_000_000_000  # 2023-11-14T22:13:20Z in ns

#: Any finite Decimal, including huge/tiny exponents, negative zero and trailing zeros.
decimals = st.decimals(allow_nan=False, allow_infinity=False)
#: Prices and sizes as a provider sends them: fixed-point text with trailing zeros kept.
prices = st.builds(
    lambda units, places: Decimal(units).scaleb(-places),
    st.integers(min_value=0, max_value=10**12),
    st.integers(min_value=0, max_value=10),
)

providers = st.sampled_from(["coinbase", "finnhub", "ccxt:kraken"])
symbols = st.sampled_from(["BTC-USD", "ETH-USD", "OANDA:EUR_USD"])
times = st.integers(min_value=T0, max_value=T0 + 10**12)
trade_ids = st.none() | st.text(max_size=8) | st.integers(0, 10**9).map(str)


@st.composite
def trades(draw: st.DrawFn) -> Trade:
    ts = draw(times)
    return Trade(
        provider=draw(providers),
        symbol=draw(symbols),
        ts=ts,
        received_ts=ts + draw(st.integers(0, 10**9)),
        price=draw(prices),
        size=draw(prices),
        side=draw(st.sampled_from([None, "buy", "sell"])),
        trade_id=draw(trade_ids),
    )


@st.composite
def quotes(draw: st.DrawFn) -> Quote:
    ts = draw(times)
    maybe = st.none() | prices
    return Quote(
        provider=draw(providers),
        symbol=draw(symbols),
        ts=ts,
        received_ts=ts + draw(st.integers(0, 10**9)),
        bid=draw(maybe),
        bid_size=draw(maybe),
        ask=draw(maybe),
        ask_size=draw(maybe),
    )


@st.composite
def candles(draw: st.DrawFn) -> Candle:
    interval = draw(st.sampled_from(sorted(INTERVAL_NS)))
    step = INTERVAL_NS[interval]
    start = T0 // step * step + draw(st.integers(0, 20)) * step
    low, high = sorted(draw(st.lists(prices, min_size=2, max_size=2)))
    return Candle(
        provider=draw(providers),
        symbol=draw(symbols),
        interval=interval,  # type: ignore[arg-type]
        start=start,
        open=draw(st.sampled_from([low, high])),
        high=high,
        low=low,
        close=draw(st.sampled_from([low, high])),
        volume=draw(st.none() | prices),
        trades=draw(st.none() | st.integers(0, 10**6)),
        basis=draw(st.sampled_from(["trade", "mid", "bid"])),
        closed=draw(st.booleans()),
        source=draw(st.sampled_from(["stream", "built", "backfill"])),
    )


@st.composite
def gaps(draw: st.DrawFn) -> Gap:
    start = draw(times)
    return Gap(
        provider=draw(providers),
        symbol=draw(symbols),
        kind=draw(st.sampled_from(["trades", "candles:1m", "book"])),
        start=start,
        end=start + draw(st.integers(1, 10**12)),
        reason=draw(st.sampled_from(["sequence", "disconnect", "candle", "startup"])),
    )


levels = st.lists(st.tuples(prices, prices), max_size=5)


@st.composite
def book_snapshots(draw: st.DrawFn) -> BookSnapshot:
    ts = draw(times)
    return BookSnapshot(
        provider=draw(providers),
        symbol=draw(symbols),
        ts=ts,
        received_ts=ts + 1,
        bids=draw(levels),
        asks=draw(levels),
        sequence=draw(st.none() | st.integers(0, 2**62)),
    )


@st.composite
def book_deltas(draw: st.DrawFn) -> BookDelta:
    ts = draw(times)
    change = st.tuples(st.sampled_from(["bid", "ask"]), prices, prices)
    return BookDelta(
        provider=draw(providers),
        symbol=draw(symbols),
        ts=ts,
        received_ts=ts + 1,
        changes=draw(st.lists(change, max_size=3)),
        sequence=draw(st.none() | st.integers(0, 2**62)),
    )


events: st.SearchStrategy[Event] = st.one_of(
    trades(), quotes(), candles(), gaps(), book_snapshots(), book_deltas()
)
