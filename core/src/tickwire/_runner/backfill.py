"""The backfill stage: fill detected gaps through the provider's REST history.

One :class:`BackfillWorker` per source with a backfill hook. Gaps arrive from the gap detector;
each is fetched through :meth:`Backfiller.fetch`, within the provider's REST rate, and what
comes back goes to the sinks like streamed events (every write is idempotent, so an overlap
with the stream is harmless). A rate-limit answer waits and retries; a failure is retried with
backoff a few times and then left ``open`` (logged as ``gap.failed``). When done, the gap is
written again with ``status`` ``filled``, or ``empty`` when the provider had nothing.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import anyio
import msgspec
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from tickwire._log import emit
from tickwire._runner.connect import Backoff
from tickwire.events import INTERVAL_NS, Event, Gap
from tickwire.history import chunks, missing_spans
from tickwire.metrics import Metrics
from tickwire.protocols import (
    Backfiller,
    BackfillRefused,
    CoverageSink,
    GapSink,
    RateLimited,
    Sink,
)

INFO, WARNING = 20, 30
#: Events handed on per publish while a gap is fetched.
CHUNK = 1000
#: Tries for a gap that keeps failing (rate limits do not count).
MAX_TRIES = 5


class BackfillWorker:
    """Fetches one source's gaps, one at a time, in the order found."""

    def __init__(
        self,
        label: str,
        backfiller: Backfiller,
        publish: Callable[[Sequence[Event]], Awaitable[None]],
        metrics: Metrics,
        *,
        requests_per_second: float | None = None,
        queue: int = 10_000,
    ) -> None:
        self.label = label
        self.backfiller = backfiller
        self.publish = publish
        self.metrics = metrics
        self.min_interval = 1 / requests_per_second if requests_per_second else 0.0
        #: ``backfill_events_total{source}``: events that came from REST, not the stream.
        self._key = ("backfill_events_total", (("source", label),))
        self._queue_size = queue
        self._streams: tuple[MemoryObjectSendStream[Gap], MemoryObjectReceiveStream[Gap]] | None = (
            None
        )
        self.pending = 0
        #: Gaps to submit later, as (due time in ns, gap), e.g. a candle whose bucket has not
        #: closed yet.
        self._later: list[tuple[int, int, Gap]] = []
        self._order = itertools.count()
        self.requests_rate_limited = 0

    def _queue(self) -> tuple[MemoryObjectSendStream[Gap], MemoryObjectReceiveStream[Gap]]:
        # Created on first use: a pipeline that is built but never run leaves nothing open.
        if self._streams is None:
            self._streams = anyio.create_memory_object_stream[Gap](self._queue_size)
        return self._streams

    def submit(self, gaps: Sequence[Gap]) -> None:
        """Queue gaps to fill (never blocks; a full queue logs and leaves the gap open)."""
        send = self._queue()[0]
        for gap in gaps:
            try:
                send.send_nowait(gap)
                self.pending += 1
            except anyio.WouldBlock:
                emit(
                    WARNING,
                    "gap.deferred",
                    "backfill queue is full; the gap stays open",
                    source=self.label,
                    symbol=gap.symbol,
                    kind=gap.kind,
                )

    def submit_at(self, due_ns: int, gap: Gap) -> None:
        """Queue ``gap`` once the clock passes ``due_ns`` (wall clock, nanoseconds)."""
        heapq.heappush(self._later, (due_ns, next(self._order), gap))

    async def run(self) -> None:
        """Fill gaps until cancelled (or :meth:`close`)."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._release_due)
                recv = self._queue()[1]
                async with recv:
                    async for gap in recv:
                        self.pending -= 1
                        await self.fill(gap)
                tg.cancel_scope.cancel()
        finally:
            self.close()

    async def _release_due(self) -> None:
        while True:
            await anyio.sleep(0.5)
            now = time.time_ns()
            while self._later and self._later[0][0] <= now:
                self.submit([heapq.heappop(self._later)[2]])

    def close(self) -> None:
        """No more gaps: release the queue (pending gaps stay open in the sinks)."""
        if self._streams is not None:
            for stream in self._streams:
                stream.close()

    async def fill(self, gap: Gap, *, quiet: bool = False) -> int:
        """Fetch one gap and publish what it holds; return how many events came.

        ``quiet`` logs the outcome at DEBUG (the bootstrap fills thousands of spans).
        """
        backoff = Backoff(1.0, 60.0)
        tries = 0
        while True:
            count = 0
            try:
                chunk: list[Event] = []
                self.metrics.inc("backfill_requests_total", source=self.label)
                async for event in self.backfiller.fetch(gap):
                    self.metrics.counters[self._key] += 1
                    chunk.append(event)
                    if len(chunk) >= CHUNK:
                        await self.publish(chunk)
                        count += len(chunk)
                        chunk = []
                if chunk:
                    await self.publish(chunk)
                    count += len(chunk)
            except BackfillRefused as exc:
                self.metrics.inc("backfill_refused_total", source=self.label)
                emit(
                    WARNING,
                    "gap.failed",
                    str(exc),
                    source=self.label,
                    symbol=gap.symbol,
                    kind=gap.kind,
                    reason="refused",
                )
                return count
            except RateLimited as exc:
                self.requests_rate_limited += 1
                delay = exc.retry_after if exc.retry_after is not None else backoff.next()
                self.metrics.inc("backfill_rate_limited_total", source=self.label)
                emit(
                    INFO,
                    "backfill.rate_limited",
                    str(exc),
                    source=self.label,
                    delay=round(delay, 2),
                )
                await anyio.sleep(delay)
                continue
            except Exception as exc:
                tries += 1
                if tries >= MAX_TRIES:
                    emit(
                        WARNING,
                        "gap.failed",
                        f"{type(exc).__name__}: {exc}",
                        source=self.label,
                        symbol=gap.symbol,
                        kind=gap.kind,
                        tries=tries,
                    )
                    return count
                delay = backoff.next()
                emit(
                    WARNING,
                    "backfill.retry",
                    f"{type(exc).__name__}: {exc}",
                    source=self.label,
                    symbol=gap.symbol,
                    delay=round(delay, 2),
                )
                await anyio.sleep(delay)
                continue
            status = "filled" if count else "empty"
            await self.publish([msgspec.structs.replace(gap, status=status)])
            self.metrics.inc("gaps_filled_total", provider=gap.provider, status=status)
            emit(
                10 if quiet else INFO,
                "gap.filled",
                provider=gap.provider,
                symbol=gap.symbol,
                kind=gap.kind,
                events=count,
                status=status,
            )
            if self.min_interval:
                await anyio.sleep(self.min_interval)
            return count


@dataclass
class SymbolProgress:
    """How far the bootstrap of one symbol is (for progress bars and the summary)."""

    source: str
    symbol: str
    interval: str
    spans: int = 0
    done: int = 0
    candles: int = 0
    buckets_missing: int = 0


@dataclass
class BootstrapReport:
    """What one bootstrap did, per symbol."""

    symbols: list[SymbolProgress] = field(default_factory=list)
    rate_limited: int = 0
    seconds: float = 0.0

    @property
    def candles(self) -> int:
        """Candles fetched over all symbols."""
        return sum(p.candles for p in self.symbols)


async def covered_spans(
    store: Sink | None, provider: str, symbol: str, kind: str
) -> list[tuple[int, int]]:
    """Spans the store records as already fetched (gaps ``filled`` or ``empty``)."""
    if not isinstance(store, GapSink):
        return []
    gaps = await store.gaps(provider, symbol)
    return [(g.start, g.end) for g in gaps if g.kind == kind and g.status in ("filled", "empty")]


async def plan_history(
    store: Sink | None,
    provider: str,
    symbol: str,
    interval: str,
    start: int,
    end: int,
    *,
    span_buckets: int = 300,
) -> list[Gap]:
    """The startup gaps that would make ``[start, end)`` of candles complete in ``store``.

    What the store holds (its candles, and the spans it recorded as fetched) is left out; the
    rest is cut into spans of ``span_buckets`` buckets, so progress is recorded span by span and
    an interrupted bootstrap resumes where it stopped.
    """
    length = INTERVAL_NS[interval]
    kind = f"candles:{interval}"
    stored: list[int] = []
    if isinstance(store, CoverageSink):
        stored = list(await store.candle_starts(provider, symbol, interval, start, end))
    covered = await covered_spans(store, provider, symbol, kind)
    gaps: list[Gap] = []
    for s, e in missing_spans(start, end, length, stored, covered):
        for cs, ce in chunks(s, e, span_buckets * length):
            gaps.append(Gap(provider, symbol, kind, cs, ce, "startup"))
    return gaps


__all__ = (
    "BackfillWorker",
    "BootstrapReport",
    "SymbolProgress",
    "covered_spans",
    "plan_history",
)
