"""The candle builder: trades (or quote mids) in, OHLCV candles out, for every provider.

Buckets are aligned on event time (``ts - ts % interval``). A bucket closes when the local clock,
corrected by the provider's observed lag, passes its end plus ``grace``: so a candle closes on
time even when no trade follows, and a trade that arrives a little late still lands in its own
bucket. A trade for a bucket closed within the last few intervals re-emits that candle with the
correction (sinks upsert by key); an older one is counted in ``candles_late_total`` and changes
no candle (the trade itself is still stored). While a bucket forms, its candle is emitted every
``forming_every`` with ``closed=False``.

Where a provider streams its own candles for an interval, the builder does not build that
interval for that symbol: a streamed candle is never overwritten by a built one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from tickwire.events import INTERVAL_NS, Candle, CandleBasis, Event, Interval, Quote, Trade
from tickwire.metrics import Metrics

_TWO = Decimal(2)
#: How many closed buckets per key stay open to late corrections.
KEEP_CLOSED = 3


class _Bucket:
    __slots__ = (
        "close",
        "closed",
        "dirty",
        "end",
        "high",
        "low",
        "open",
        "start",
        "trades",
        "volume",
    )

    def __init__(self, start: int, end: int, price: Decimal, size: Decimal | None) -> None:
        self.start = start
        self.end = end
        self.open = self.high = self.low = self.close = price
        self.volume = size
        self.trades = 1
        self.closed = False
        self.dirty = True


class _Series:
    """The buckets of one (provider, symbol, interval)."""

    __slots__ = ("buckets", "current", "interval", "length", "provider", "symbol")

    def __init__(self, provider: str, symbol: str, interval: Interval) -> None:
        #: The newest bucket: almost every trade lands in it (the fast path).
        self.current: _Bucket | None = None
        self.provider = provider
        self.symbol = symbol
        self.interval: Interval = interval
        self.length = INTERVAL_NS[interval]
        #: start -> bucket, oldest first (insertion order is time order in practice).
        self.buckets: dict[int, _Bucket] = {}


class CandleBuilder:
    """Builds candles for ``intervals`` from the trades (and quotes) it is shown.

    :param intervals: the intervals to build.
    :param grace: nanoseconds after a bucket's end before it closes.
    :param basis: per provider, what to build from when it has no trades (``mid`` or ``bid``).
    :param streamed: per provider, intervals it streams itself (not built).
    """

    def __init__(
        self,
        intervals: Sequence[Interval],
        *,
        grace: int = 2_000_000_000,
        basis: dict[str, CandleBasis] | None = None,
        streamed: dict[str, frozenset[str]] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.intervals: tuple[Interval, ...] = tuple(intervals)
        self.grace = grace
        self.basis = basis or {}
        self.streamed = streamed or {}
        self.metrics = metrics
        self._series: dict[tuple[str, str], list[_Series]] = {}
        self._skip: set[tuple[str, str, str]] = set()
        self._lag: dict[str, int] = {}

    # ---- input ---------------------------------------------------------------------------

    def _series_for(self, provider: str, symbol: str) -> list[_Series]:
        key = (provider, symbol)
        series = self._series.get(key)
        if series is None:
            skip = self.streamed.get(provider, frozenset())
            series = [
                _Series(provider, symbol, iv)
                for iv in self.intervals
                if iv not in skip and (provider, symbol, iv) not in self._skip
            ]
            self._series[key] = series
        return series

    def process(self, events: Iterable[Event]) -> list[Candle]:
        """Take in a batch of events; return the candles corrected by late trades."""
        out: list[Candle] = []
        basis = self.basis
        all_series = self._series
        for event in events:
            cls = type(event)
            if cls is Trade:
                trade: Trade = event  # type: ignore[assignment]
                if basis and basis.get(trade.provider, "trade") != "trade":
                    continue
                ts = trade.ts
                price = trade.price
                series_list = all_series.get((trade.provider, trade.symbol))
                if series_list is not None and len(series_list) == 1:
                    # The fast path (one interval, the trade in the newest bucket), inline.
                    bucket = series_list[0].current
                    if bucket is not None and bucket.start <= ts < bucket.end and not bucket.closed:
                        if price > bucket.high:
                            bucket.high = price
                        elif price < bucket.low:
                            bucket.low = price
                        bucket.close = price
                        volume = bucket.volume
                        bucket.volume = trade.size if volume is None else volume + trade.size
                        bucket.trades += 1
                        bucket.dirty = True
                        continue
                self._add(
                    trade.provider,
                    trade.symbol,
                    ts,
                    trade.received_ts,
                    price,
                    trade.size,
                    out,
                )
            elif cls is Quote:
                quote: Quote = event  # type: ignore[assignment]
                kind = basis.get(quote.provider, "trade")
                if kind == "mid" and quote.bid is not None and quote.ask is not None:
                    price = (quote.bid + quote.ask) / _TWO
                elif kind == "bid" and quote.bid is not None:
                    price = quote.bid
                else:
                    continue
                self._add(
                    quote.provider, quote.symbol, quote.ts, quote.received_ts, price, None, out
                )
            elif cls is Candle:
                candle: Candle = event  # type: ignore[assignment]
                if candle.source == "stream":
                    self._stop_building(candle.provider, candle.symbol, candle.interval)
        return out

    def _stop_building(self, provider: str, symbol: str, interval: str) -> None:
        key = (provider, symbol, interval)
        if key in self._skip:
            return
        self._skip.add(key)
        series = self._series.get((provider, symbol))
        if series is not None:
            self._series[(provider, symbol)] = [s for s in series if s.interval != interval]

    def _add(
        self,
        provider: str,
        symbol: str,
        ts: int,
        received_ts: int,
        price: Decimal,
        size: Decimal | None,
        out: list[Candle],
    ) -> None:
        series_list = self._series.get((provider, symbol))
        if series_list is None:
            series_list = self._series_for(provider, symbol)
        for series in series_list:
            bucket = series.current
            if bucket is None or not bucket.start <= ts < bucket.end:
                bucket = self._bucket_for(series, ts, received_ts, price, size)
                if bucket is None:
                    continue
            if price > bucket.high:
                bucket.high = price
            elif price < bucket.low:
                bucket.low = price
            bucket.close = price
            if size is not None:
                bucket.volume = size if bucket.volume is None else bucket.volume + size
            bucket.trades += 1
            bucket.dirty = True
            if bucket.closed:
                out.append(self._candle(series, bucket))
                bucket.dirty = False

    def _bucket_for(
        self, series: _Series, ts: int, received_ts: int, price: Decimal, size: Decimal | None
    ) -> _Bucket | None:
        """The bucket of ``ts`` when it exists and may change; a new one is created (and
        counted as the trade's) and ``None`` returned; ``None`` too for a trade too late."""
        start = ts - ts % series.length
        buckets = series.buckets
        bucket = buckets.get(start)
        if bucket is not None:
            return bucket
        if buckets and start < next(iter(buckets)):
            if self.metrics is not None:
                self.metrics.inc("candles_late_total", provider=series.provider)
            return None
        self._lag[series.provider] = received_ts - ts
        bucket = buckets[start] = _Bucket(start, start + series.length, price, size)
        if series.current is None or start > series.current.start:
            series.current = bucket
        elif len(buckets) > 1:
            series.buckets = dict(sorted(buckets.items()))
        return None

    # ---- time ----------------------------------------------------------------------------

    def tick(self, now_ns: int, *, forming: bool = True) -> list[Candle]:
        """Close the buckets whose time has come; with ``forming``, emit the changed open ones."""
        out: list[Candle] = []
        grace = self.grace
        for series_list in self._series.values():
            for series in series_list:
                if not series.buckets:
                    continue
                lag = max(self._lag.get(series.provider, 0), 0)
                horizon = now_ns - lag - grace
                closed_kept = 0
                for bucket in reversed(series.buckets.values()):
                    if bucket.closed:
                        closed_kept += 1
                        continue
                    if bucket.start + series.length <= horizon:
                        bucket.closed = True
                        closed_kept += 1
                        out.append(self._candle(series, bucket))
                        bucket.dirty = False
                    elif forming and bucket.dirty:
                        out.append(self._candle(series, bucket))
                        bucket.dirty = False
                if closed_kept > KEEP_CLOSED:
                    self._prune(series)
        return out

    @staticmethod
    def _prune(series: _Series) -> None:
        closed = [s for s, b in series.buckets.items() if b.closed]
        for start in closed[: len(closed) - KEEP_CLOSED]:
            del series.buckets[start]

    def flush(self) -> list[Candle]:
        """At shutdown: the still-forming candles as they stand (``closed=False``)."""
        out: list[Candle] = []
        for series_list in self._series.values():
            for series in series_list:
                for bucket in series.buckets.values():
                    if not bucket.closed and bucket.dirty:
                        out.append(self._candle(series, bucket))
                        bucket.dirty = False
        return out

    def _candle(self, series: _Series, bucket: _Bucket) -> Candle:
        basis = self.basis.get(series.provider, "trade")
        return Candle(
            provider=series.provider,
            symbol=series.symbol,
            interval=series.interval,
            start=bucket.start,
            open=bucket.open,
            high=bucket.high,
            low=bucket.low,
            close=bucket.close,
            volume=bucket.volume,
            trades=bucket.trades if basis == "trade" else None,
            basis=basis,
            closed=bucket.closed,
            source="built",
        )


__all__ = ("KEEP_CLOSED", "CandleBuilder")
