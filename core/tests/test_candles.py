"""The candle builder against a direct computation, for any trade sequence and alignment."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from tickwire.candles import CandleBuilder
from tickwire.events import INTERVAL_NS, Candle, Quote, Trade
from tickwire.testing.strategies import prices, sizes

S = 1_000_000_000


def final_candles(out: list[Candle]) -> dict[tuple[str, int], Candle]:
    """The last word on every bucket (sinks upsert by key)."""
    return {(c.interval, c.start): c for c in out}


def reference(trades: list[Trade], interval: str) -> dict[tuple[str, int], tuple]:
    length = INTERVAL_NS[interval]
    buckets: dict[int, list[Trade]] = {}
    for t in sorted(trades, key=lambda t: t.ts):  # stable: equal ts keep arrival order
        buckets.setdefault(t.ts - t.ts % length, []).append(t)
    return {
        (interval, start): (
            ts[0].price,
            max(t.price for t in ts),
            min(t.price for t in ts),
            ts[-1].price,
            sum((t.size for t in ts), Decimal(0)),
            len(ts),
        )
        for start, ts in buckets.items()
    }


@st.composite
def trade_runs(draw: st.DrawFn) -> list[Trade]:
    """Trades in time order from an arbitrary origin (any alignment), with equal-time runs."""
    origin = draw(st.integers(1_600_000_000 * S, 1_800_000_000 * S))
    steps = draw(st.lists(st.integers(0, 90 * S), min_size=1, max_size=60))
    out, ts = [], origin
    for i, step in enumerate(steps):
        ts += step
        out.append(Trade("p", "X", ts, ts, draw(prices), draw(sizes), None, str(i)))
    return out


@settings(max_examples=300, deadline=None)
@given(trade_runs(), st.sampled_from(["1s", "1m", "5m", "1h"]))
def test_ohlcv_equals_direct_computation(trades: list[Trade], interval: str) -> None:
    builder = CandleBuilder([interval], grace=0)
    out: list[Candle] = []
    for t in trades:
        out += builder.process([t])
        out += builder.tick(t.ts, forming=False)  # the clock follows the trades
    out += builder.tick(trades[-1].ts + 10 * INTERVAL_NS[interval])
    got = {
        k: (c.open, c.high, c.low, c.close, c.volume, c.trades)
        for k, c in final_candles(out).items()
    }
    assert got == reference(trades, interval)
    assert all(c.closed for c in final_candles(out).values())


@settings(max_examples=200, deadline=None)
@given(trade_runs(), st.randoms(use_true_random=False))
def test_late_trades_within_the_kept_buckets_correct_the_candle(trades, rnd) -> None:
    """Shuffled within a minute's window of arrival, the result is still exact."""
    shuffled = sorted(trades, key=lambda t: (t.ts // (60 * S), rnd.random()))
    builder = CandleBuilder(["1m"], grace=0)
    out: list[Candle] = []
    for t in shuffled:
        out += builder.process([t])
    out += builder.tick(trades[-1].ts + 10 * 60 * S)
    got = final_candles(out)
    ref = reference(trades, "1m")
    assert set(got) == set(ref)
    for key, (_o, h, lo, _c, v, n) in ref.items():
        candle = got[key]
        assert (candle.high, candle.low, candle.volume, candle.trades) == (h, lo, v, n)


def test_candle_closes_on_time_with_no_further_trade() -> None:
    builder = CandleBuilder(["1m"], grace=2 * S)
    t0 = 1_700_000_000 * S - (1_700_000_000 * S) % (60 * S)
    builder.process([Trade("p", "X", t0 + 5 * S, t0 + 5 * S, Decimal(5), Decimal(1))])
    assert [c.closed for c in builder.tick(t0 + 61 * S)] == [False]  # forming
    assert builder.tick(t0 + 61 * S) == []  # unchanged: nothing new
    (closed,) = builder.tick(t0 + 62 * S)
    assert closed.closed and closed.close == Decimal(5)


def test_provider_lag_delays_closing() -> None:
    """A provider whose clock runs 5 s behind ours does not see its buckets closed early."""
    builder = CandleBuilder(["1m"], grace=S)
    t0 = 1_700_000_000 * S - (1_700_000_000 * S) % (60 * S)
    builder.process([Trade("p", "X", t0 + 30 * S, t0 + 35 * S, Decimal(1), Decimal(1))])
    assert not any(c.closed for c in builder.tick(t0 + 62 * S))
    assert any(c.closed for c in builder.tick(t0 + 67 * S))


def test_mid_basis_from_quotes_and_streamed_intervals_are_not_built() -> None:
    builder = CandleBuilder(
        ["1m", "5m"], grace=0, basis={"ig": "mid"}, streamed={"ig": frozenset({"5m"})}
    )
    t0 = 1_700_000_000 * S - (1_700_000_000 * S) % (300 * S)
    builder.process([Quote("ig", "E", t0, t0, Decimal("1.1000"), None, Decimal("1.1002"), None)])
    out = builder.tick(t0 + 600 * S)
    assert [(c.interval, c.close, c.basis, c.volume, c.trades) for c in out] == [
        ("1m", Decimal("1.1001"), "mid", None, None)
    ]


def test_a_streamed_candle_stops_building_that_interval() -> None:
    builder = CandleBuilder(["1m"], grace=0)
    t0 = 1_700_000_000 * S - (1_700_000_000 * S) % (60 * S)
    streamed = Candle(
        "p", "X", "1m", t0, Decimal(1), Decimal(1), Decimal(1), Decimal(1), source="stream"
    )
    builder.process([streamed])
    builder.process([Trade("p", "X", t0, t0, Decimal(2), Decimal(1))])
    assert builder.tick(t0 + 120 * S) == []
