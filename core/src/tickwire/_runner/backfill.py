"""The backfill stage: fill detected gaps through the provider's REST history.

One :class:`BackfillWorker` per source with a backfill hook. Gaps arrive from the gap detector;
each is fetched through :meth:`Backfiller.fetch`, within the provider's REST rate, and what
comes back goes to the sinks like streamed events (every write is idempotent, so an overlap
with the stream is harmless). A rate-limit answer waits and retries; a failure is retried with
backoff a few times and then left ``open`` (logged as ``gap.failed``). When done, the gap is
written again with ``status`` ``filled``, or ``empty`` when the provider had nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio
import msgspec

from tickwire._log import emit
from tickwire._runner.connect import Backoff
from tickwire.events import Event, Gap
from tickwire.metrics import Metrics
from tickwire.protocols import Backfiller, BackfillRefused, RateLimited

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
        self._send, self._recv = anyio.create_memory_object_stream[Gap](queue)
        self.pending = 0

    def submit(self, gaps: Sequence[Gap]) -> None:
        """Queue gaps to fill (never blocks; a full queue logs and leaves the gap open)."""
        for gap in gaps:
            try:
                self._send.send_nowait(gap)
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

    async def run(self) -> None:
        """Fill gaps until cancelled (or :meth:`close`)."""
        try:
            async with self._recv:
                async for gap in self._recv:
                    self.pending -= 1
                    await self.fill(gap)
        finally:
            self._send.close()

    def close(self) -> None:
        """No more gaps: release the queue (pending gaps stay open in the sinks)."""
        self._send.close()
        self._recv.close()

    async def fill(self, gap: Gap) -> int:
        """Fetch one gap and publish what it holds; return how many events came."""
        backoff = Backoff(1.0, 60.0)
        tries = 0
        while True:
            count = 0
            try:
                chunk: list[Event] = []
                async for event in self.backfiller.fetch(gap):
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
                INFO,
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


__all__ = ("BackfillWorker",)
