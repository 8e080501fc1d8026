"""The sink stage: a bounded buffer, batching and retries around every plugin sink.

:class:`RunningSink` (Telegraf's ``RunningOutput``) owns what a sink plugin must not: the buffer
(bounded in events: when it is full the sources wait, so nothing is dropped while the pipeline
runs), batches sized by count and time, and retries with backoff when a write fails. The
:class:`Fanout` hands every batch of events to every sink (and to taps).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Sequence

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from tickwire._log import emit
from tickwire._runner.connect import Backoff
from tickwire.events import Event
from tickwire.metrics import Metrics
from tickwire.protocols import RetentionSink, Sink
from tickwire.settings import SinkSettings

INFO, WARNING, ERROR = 20, 30, 40
_IDLE = 1 << 62


class RunningSink:
    """Buffers, batches and retries for one configured sink."""

    def __init__(self, settings: SinkSettings, sink: Sink, metrics: Metrics) -> None:
        self.settings = settings
        self.sink = sink
        self.label = settings.label
        self.metrics = metrics
        self.capacity = settings.buffer
        self.batch_size = settings.batch_size
        self.flush_interval = settings.flush_interval.total_seconds()
        self._chunks: deque[Sequence[Event]] = deque()
        self.queued = 0
        self._closed = False
        self._data: anyio.Event | None = None
        self._space: anyio.Event | None = None
        #: The writer is woken once this many events are queued (``_IDLE``: it is not waiting).
        self._want = _IDLE
        self.writable = False
        self.written = 0
        self.dropped = 0

    # ---- the producer side ---------------------------------------------------------------

    def offer(self, events: Sequence[Event]) -> bool:
        """Queue ``events`` if there is room; ``False`` when the buffer is full."""
        if self.queued >= self.capacity and self.queued:
            return False
        self._chunks.append(events)
        self.queued += len(events)
        if self.queued >= self._want and self._data is not None:
            self._data.set()
        return True

    async def put(self, events: Sequence[Event]) -> None:
        """Queue ``events``, waiting for room (backpressure) while the buffer is full."""
        if self.offer(events):
            return
        self.metrics.inc("sink_backpressure_total", sink=self.label)
        while not self.offer(events):
            if self._space is None or self._space.is_set():
                self._space = anyio.Event()
            await self._space.wait()

    def close(self) -> None:
        """No more events will come: the writer drains what is queued and stops."""
        self._closed = True
        self._want = 0
        if self._data is not None:
            self._data.set()

    # ---- the writer ----------------------------------------------------------------------

    async def _wait_for(self, want: int) -> None:
        self._data = anyio.Event()
        self._want = want
        try:
            await self._data.wait()
        finally:
            self._want = _IDLE

    async def _next_batch(self) -> list[Event] | None:
        while not self._chunks:
            if self._closed:
                return None
            await self._wait_for(1)
        if self.queued < self.batch_size and not self._closed:
            # Wait a little for a fuller batch, but never longer than the flush interval.
            with anyio.move_on_after(self.flush_interval):
                await self._wait_for(self.batch_size)
        batch: list[Event] = []
        chunks = self._chunks
        while chunks and len(batch) < self.batch_size:
            batch.extend(chunks.popleft())
        self.queued -= len(batch)
        if self._space is not None:
            self._space.set()
        self.metrics.set("sink_queue", self.queued, sink=self.label)
        return batch

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the sink (retrying), then write batches until closed and drained."""
        backoff = Backoff(0.1, 30.0)
        while True:
            try:
                await self.sink.open()
                break
            except Exception as exc:
                delay = backoff.next()
                self.metrics.inc("sink_errors_total", sink=self.label)
                emit(
                    ERROR,
                    "sink.retry",
                    str(exc) or type(exc).__name__,
                    sink=self.label,
                    stage="open",
                    delay=round(delay, 2),
                    attempt=backoff.attempt,
                )
                await anyio.sleep(delay)
        self.writable = True
        emit(INFO, "sink.open", sink=self.label, type=self.settings.type)
        task_status.started()
        try:
            while (batch := await self._next_batch()) is not None:
                if batch:
                    await self._write(batch)
        finally:
            with anyio.CancelScope(shield=True):
                await self.sink.aclose()
                emit(INFO, "sink.closed", sink=self.label, written=self.written)

    async def _write(self, batch: list[Event]) -> None:
        backoff = Backoff(0.1, 30.0)
        hist = self.metrics.histogram("sink_write_seconds", sink=self.label)
        while True:
            started = time.perf_counter()
            try:
                await self.sink.write_batch(batch)
            except Exception as exc:
                self.writable = False
                delay = backoff.next()
                self.metrics.inc("sink_errors_total", sink=self.label)
                emit(
                    WARNING,
                    "sink.retry",
                    str(exc) or type(exc).__name__,
                    sink=self.label,
                    rows=len(batch),
                    delay=round(delay, 2),
                    attempt=backoff.attempt,
                )
                await anyio.sleep(delay)
                continue
            hist.observe(time.perf_counter() - started)
            if not self.writable:
                emit(INFO, "sink.restored", sink=self.label, rows=len(batch))
            self.writable = True
            self.written += len(batch)
            self.metrics.inc("sink_rows_total", len(batch), sink=self.label)
            self.metrics.inc("sink_batches_total", sink=self.label)
            return

    async def enforce_retention(self) -> None:
        """Ask the sink to prune by its retention, if it can."""
        if self.settings.retention is None or not isinstance(self.sink, RetentionSink):
            return
        try:
            removed = await self.sink.enforce_retention(time.time_ns())
        except Exception as exc:
            emit(WARNING, "sink.retention_failed", str(exc), sink=self.label)
            return
        if removed:
            emit(
                INFO,
                "sink.retention",
                sink=self.label,
                removed=removed,
                retention=self.settings.retention,
            )


class Fanout:
    """Hands each batch of events to every running sink and tap."""

    def __init__(self, targets: Sequence[RunningSink]) -> None:
        self.targets: list[RunningSink] = list(targets)
        self.taps: list[MemoryObjectSendStream[Sequence[Event]]] = []

    async def publish(self, events: Sequence[Event]) -> None:
        """Give ``events`` to every sink, waiting where a buffer is full."""
        for target in self.targets:
            if not target.offer(events):
                await target.put(events)
        for tap in tuple(self.taps):
            try:
                tap.send_nowait(events)
            except anyio.WouldBlock:
                await tap.send(events)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.taps.remove(tap)


def backlog_seconds(sink: RunningSink) -> float:
    """A rough drain time of the buffer at the observed write rate (for the live view)."""
    hist = sink.metrics.histogram("sink_write_seconds", sink=sink.label)
    if not hist.count or not sink.queued:
        return 0.0
    per_row = hist.total / max(sink.written, 1)
    return math.ceil(per_row * sink.queued * 100) / 100


__all__ = ("Fanout", "RunningSink", "backlog_seconds")
