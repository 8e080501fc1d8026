"""The backfill stage: fill detected gaps through the provider's REST history.

One :class:`BackfillWorker` per source with a backfill hook. Gaps arrive from the gap detector;
each is fetched through :meth:`Backfiller.fetch`, within the provider's REST rate, and what
comes back goes to the sinks like streamed events (every write is idempotent, so an overlap
with the stream is harmless).

Gaps of the same provider, symbol and kind that overlap or touch while they wait are fetched
as one: the union, once (:func:`tickwire.gaps.group_gaps`). The outcome is written as one row
per gap start, each cut where the next begins (:func:`tickwire.gaps.split_rows`), so every gap
found is resolved under its own key and no two stored rows cover the same span. Where the
backfiller says apart gaps cost no more fetched as one
(:class:`~tickwire.protocols.CoalescingBackfiller`: a trades endpoint paged from the newest
trade back), the runs of a key that wait together are fetched as one span, and only the events
inside the gaps are handed on: after a reconnect storm every symbol's gaps cost one request,
not one each.

A rate-limit answer waits and retries. When done, each row is written again with ``status``
``filled``, or ``empty`` when the provider had nothing in it. A refusal
(:class:`~tickwire.protocols.BackfillRefused`) marks the gap ``failed`` at once, with the
provider's message as ``detail``, and is not retried in this run. Any other failure is retried
with backoff :data:`MAX_TRIES` times; then the gap is marked ``failed`` with the last error as
``detail`` and queued again after each delay of ``retry_failed`` (a provider outage heals by
itself). Either way the line ``gap.failed`` says why, and a failed span is not covered: the next
bootstrap fetches it again.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import msgspec

from tickwire._log import emit
from tickwire._runner.connect import Backoff
from tickwire.events import INTERVAL_NS, Event, Gap, GapStatus, event_time
from tickwire.gaps import group_gaps, rows_with_events, split_rows, union_gap
from tickwire.history import chunks, missing_spans
from tickwire.metrics import Metrics
from tickwire.protocols import (
    Backfiller,
    BackfillRefused,
    CoalescingBackfiller,
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
#: Seconds before a gap that failed (not refused) is queued again, one delay per round; after
#: the last round it stays ``failed`` until the next bootstrap.
RETRY_FAILED: tuple[float, ...] = (300.0, 1800.0, 3600.0)
#: How often waiting gaps are checked for being due, in seconds.
RELEASE_EVERY = 0.5

_Key = tuple[str, str, str]
_T = TypeVar("_T")


def _key(gap: Gap) -> _Key:
    return (gap.provider, gap.symbol, gap.kind)


def _real(items: list[_T], between: set[int]) -> list[_T]:
    """``items`` (rows, or what was seen in each) without the stretches between coalesced
    runs."""
    return [item for i, item in enumerate(items) if i not in between] if between else items


class BackfillWorker:
    """Fetches one source's gaps, a run of overlapping ones at a time, in the order found.

    :param label: the source label, for logs and metrics.
    :param backfiller: the provider's backfill hook.
    :param publish: hands events (and the gap rows with their outcome) on to the sinks.
    :param requests_per_second: the provider's REST rate: the worker waits between fetches.
    :param queue: how many gaps may wait; beyond it a gap stays open (``gap.deferred``).
    :param retry_failed: seconds before a failed gap is tried again, per round.
    :param backoff: initial and largest delay between the tries of one fetch, in seconds.
    """

    def __init__(
        self,
        label: str,
        backfiller: Backfiller,
        publish: Callable[[Sequence[Event]], Awaitable[None]],
        metrics: Metrics,
        *,
        requests_per_second: float | None = None,
        queue: int = 10_000,
        retry_failed: Sequence[float] = RETRY_FAILED,
        backoff: tuple[float, float] = (1.0, 60.0),
    ) -> None:
        self.label = label
        self.backfiller = backfiller
        self.publish = publish
        self.metrics = metrics
        self.min_interval = 1 / requests_per_second if requests_per_second else 0.0
        #: ``backfill_events_total{source}``: events that came from REST, not the stream.
        self._key = ("backfill_events_total", (("source", label),))
        self._queue_size = queue
        self.retry_failed = tuple(retry_failed)
        self.backoff = backoff
        #: Gaps ready to fetch, per (provider, symbol, kind), in the order their key came.
        self._ready: dict[_Key, list[Gap]] = {}
        #: Gaps to submit later, per key, as (due time in ns, gap), e.g. a candle whose bucket
        #: has not closed yet.
        self._later: dict[_Key, list[tuple[int, Gap]]] = {}
        #: Failed rounds so far, per gap (provider, symbol, kind, start).
        self._rounds: dict[tuple[str, str, str, int], int] = {}
        self._wake: anyio.Event | None = None
        #: Gaps waiting in the ready queue.
        self.pending = 0
        self.requests_rate_limited = 0

    def submit(self, gaps: Sequence[Gap]) -> None:
        """Queue gaps to fill (never blocks; a full queue logs and leaves the gap open)."""
        for gap in gaps:
            if self.pending >= self._queue_size:
                emit(
                    WARNING,
                    "gap.deferred",
                    "backfill queue is full; the gap stays open",
                    source=self.label,
                    symbol=gap.symbol,
                    kind=gap.kind,
                )
                continue
            self._ready.setdefault(_key(gap), []).append(gap)
            self.pending += 1
        if self._wake is not None and self._ready:
            self._wake.set()

    def submit_at(self, due_ns: int, gap: Gap) -> None:
        """Queue ``gap`` once the clock passes ``due_ns`` (wall clock, nanoseconds).

        Waiting gaps of the same key that overlap or touch are released together, when the
        last of them is due, and fetched as one.
        """
        self._later.setdefault(_key(gap), []).append((due_ns, gap))

    def release_due(self, now_ns: int) -> int:
        """Move every waiting run whose gaps are all due by ``now_ns`` to the ready queue;
        return how many gaps moved."""
        moved = 0
        for key in list(self._later):
            entries = self._later[key]
            due_of: dict[int, int] = {}
            for due, gap in entries:
                due_of[id(gap)] = max(due_of.get(id(gap), due), due)
            keep: list[tuple[int, Gap]] = []
            for run in group_gaps(gap for _, gap in entries):
                if max(due_of[id(g)] for g in run) <= now_ns:
                    self.submit(run)
                    moved += len(run)
                else:
                    keep.extend((due_of[id(g)], g) for g in run)
            if keep:
                self._later[key] = keep
            else:
                del self._later[key]
        return moved

    async def drain(self) -> None:
        """Fill every gap queued now (and any that comes while doing so)."""
        while self._ready:
            key = next(iter(self._ready))
            gaps = self._ready.pop(key)
            self.pending -= len(gaps)
            for runs in self._coalesced(key[2], group_gaps(gaps)):
                await self.fill_runs(runs, retry=True)

    def _coalesced(self, kind: str, runs: list[list[Gap]]) -> list[list[list[Gap]]]:
        """The runs (of one key, sorted) to fetch together: those the backfiller says cost no
        more as one fetch (:class:`~tickwire.protocols.CoalescingBackfiller`)."""
        within = (
            self.backfiller.coalesce_within(kind)
            if isinstance(self.backfiller, CoalescingBackfiller)
            else None
        )
        if within is None or len(runs) < 2:
            return [[run] for run in runs]
        batches: list[list[list[Gap]]] = []
        reach = 0
        for run in runs:
            if batches and run[0].start - reach <= within:
                batches[-1].append(run)
            else:
                batches.append([run])
            reach = max(reach, run[0].start, *(g.end for g in run))
        return batches

    async def run(self) -> None:
        """Fill gaps until cancelled (or :meth:`close`)."""
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._release_loop)
                while True:
                    if not self._ready:
                        self._wake = anyio.Event()
                        await self._wake.wait()
                        continue
                    await self.drain()
        finally:
            self.close()

    async def _release_loop(self) -> None:
        while True:
            await anyio.sleep(RELEASE_EVERY)
            self.release_due(time.time_ns())

    def close(self) -> None:
        """No more gaps: drop the queue (pending gaps stay open in the sinks)."""
        self._ready.clear()
        self._later.clear()
        self.pending = 0

    async def fill(self, gap: Gap, *, quiet: bool = False) -> int:
        """Fetch one gap and publish what it holds; return how many events came.

        ``quiet`` logs the outcome at DEBUG (the bootstrap fills thousands of spans). A gap
        that fails is marked ``failed`` and not queued again (the next bootstrap retries it).
        """
        return await self.fill_runs([[gap]], quiet=quiet)

    async def fill_run(
        self, run: Sequence[Gap], *, quiet: bool = False, retry: bool = False
    ) -> int:
        """Fetch the union of a run of gaps (see :func:`~tickwire.gaps.group_gaps`) once,
        publish what it holds, and write each of :func:`~tickwire.gaps.split_rows` with its
        outcome; return how many events came.

        With ``retry``, a run that failed for a reason other than a refusal is queued again
        after the next delay of ``retry_failed``.
        """
        return await self.fill_runs([run], quiet=quiet, retry=retry)

    async def fill_runs(
        self, runs: Sequence[Sequence[Gap]], *, quiet: bool = False, retry: bool = False
    ) -> int:
        """Fetch several runs of one key (sorted, apart) as one span, as :meth:`fill_run`
        does one: only the events inside the runs are published (the stretches between them
        were not missing), and each run's rows get their outcome."""
        run = [g for r in runs for g in r]
        rows: list[Gap] = []
        #: Indexes in ``rows`` of the stretches between two runs: fetched, never written.
        between: set[int] = set()
        for i, r in enumerate(runs):
            if i:
                stop = max(max(g.end for g in runs[i - 1]), runs[i - 1][0].start)
                between.add(len(rows))
                rows.append(msgspec.structs.replace(r[0], start=stop, end=r[0].start))
            rows.extend(split_rows(r))
        target = union_gap(run)  # the runs are sorted by start, and each run too
        backoff = Backoff(*self.backoff)
        tries = 0
        while True:
            count = 0
            seen = [False] * len(rows)
            try:
                chunk: list[Event] = []
                self.metrics.inc("backfill_requests_total", source=self.label)
                async for event in self.backfiller.fetch(target):
                    self.metrics.counters[self._key] += 1
                    chunk.append(event)
                    if len(chunk) >= CHUNK:
                        count += await self._hand_on(chunk, rows, seen, between)
                        chunk = []
                if chunk:
                    count += await self._hand_on(chunk, rows, seen, between)
            except BackfillRefused as exc:
                self.metrics.inc("backfill_refused_total", source=self.label)
                await self._failed(
                    run, _real(rows, between), str(exc) or type(exc).__name__, "refused", 1
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
                why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                if tries >= MAX_TRIES:
                    await self._failed(run, _real(rows, between), why, "error", tries, retry=retry)
                    return count
                delay = backoff.next()
                emit(
                    WARNING,
                    "backfill.retry",
                    why,
                    source=self.label,
                    symbol=target.symbol,
                    delay=round(delay, 2),
                )
                await anyio.sleep(delay)
                continue
            break
        for gap in run:
            self._rounds.pop((*_key(gap), gap.start), None)
        resolved: list[Event] = []
        for row, hit in zip(_real(rows, between), _real(seen, between), strict=True):
            status: GapStatus = "filled" if hit else "empty"
            resolved.append(msgspec.structs.replace(row, status=status, detail=None))
            self.metrics.inc("gaps_filled_total", provider=row.provider, status=status)
        await self.publish(resolved)
        emit(
            10 if quiet else INFO,
            "gap.filled",
            provider=target.provider,
            symbol=target.symbol,
            kind=target.kind,
            events=count,
            status="filled" if count else "empty",
            **(
                {"gaps": len(rows), "start": target.start, "end": target.end}
                if len(rows) > 1
                else {}
            ),
        )
        if self.min_interval:
            await anyio.sleep(self.min_interval)
        return count

    async def _hand_on(
        self, chunk: list[Event], rows: Sequence[Gap], seen: list[bool], between: set[int]
    ) -> int:
        if between:
            # Events of the stretches between the runs are stored already: not handed on.
            starts = [r.start for r in rows]
            chunk = [
                e
                for e in chunk
                if max(bisect.bisect_right(starts, event_time(e)) - 1, 0) not in between
            ]
            if not chunk:
                return 0
        await self.publish(chunk)
        for i, hit in enumerate(rows_with_events(rows, chunk)):
            seen[i] = seen[i] or hit
        return len(chunk)

    async def _failed(
        self,
        run: Sequence[Gap],
        rows: Sequence[Gap],
        why: str,
        cause: str,
        tries: int,
        *,
        retry: bool = False,
    ) -> None:
        """Mark every row ``failed`` with ``why``; log it; queue the run again if it may heal."""
        await self.publish(
            [msgspec.structs.replace(row, status="failed", detail=why) for row in rows]
        )
        retry_in: float | None = None
        if retry and cause != "refused":
            keys = [(*_key(g), g.start) for g in run]
            done = max(self._rounds.get(k, 0) for k in keys)
            if done < len(self.retry_failed):
                retry_in = self.retry_failed[done]
                for k in keys:
                    self._rounds[k] = done + 1
                due = time.time_ns() + int(retry_in * 1e9)
                for gap in run:
                    self.submit_at(due, gap)
            else:
                for k in keys:
                    self._rounds.pop(k, None)
        first = run[0]
        emit(
            WARNING,
            "gap.failed",
            why,
            source=self.label,
            provider=first.provider,
            symbol=first.symbol,
            kind=first.kind,
            start=first.start,
            end=max(g.end for g in run),
            reason=cause,
            tries=tries,
            **({"retry_in": retry_in} if retry_in is not None else {}),
        )


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
    """Spans the store records as already fetched (gaps ``filled`` or ``empty``; a ``failed``
    or ``open`` gap is still missing)."""
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
