"""The sink stage: a bounded buffer, batching and retries around every plugin sink.

:class:`RunningSink` (Telegraf's ``RunningOutput``) owns what a sink plugin must not: the buffer
(bounded in events), batches, and retries with backoff when a write fails.

Batches are group commits: when no write is in flight, whatever is queued is written at once
(up to ``batch_size``); while a write is in flight, what arrives waits and goes in the next
write. So a write carries what arrived during the one before it: at low load a batch is a few
events and an event waits about one write, under load the batches grow (to ``batch_size``) and
the writes keep up. ``flush_interval`` (0 by default) lets a partial batch wait for more
events, at most that long after its oldest event was queued: fewer, larger writes for up to
that much more latency.

When a spill directory is set (the default), every sink has a write-ahead file
(:mod:`tickwire.spill`). With ``spill_mode = "write-ahead"`` (the default) every chunk of events
is appended to it before it waits in memory, and the file's head is committed as batches are
written. When the buffer is full (the sink is down or slow) the overflow goes to the file only,
instead of blocking the sources; it is replayed, oldest first and before anything newer, once
the sink writes again (and at the next start after a crash). Only when the spill file is full
too (``spill_max_bytes``) do the sources wait (``sink.spill_full``), so nothing is dropped
while the pipeline runs. ``spill_mode = "overflow"`` writes only that overflow. The
:class:`Fanout` hands every batch of events to every sink (and to taps).

What each kind of stop can lose, per sink:

* SIGTERM / Ctrl-C: nothing. The buffer is flushed within ``shutdown_deadline``; what the
  deadline cuts off (the sink is down) stays in (``overflow``: is written to) the spill file,
  and is replayed at the next start (``sink.spill_saved``, then ``sink.spill_recovered``).
* The process killed hard (SIGKILL, OOM): nothing accepted (``write-ahead``: every accepted
  event is in the file, in the page cache). ``overflow``: what was in memory, at most
  ``buffer`` events plus the batch being written.
* The machine losing power: appends not yet fsynced, at most ``spill_fsync_interval`` (default
  100 ms) of events (``overflow``: of overflow, plus what was in memory); 0 syncs every append.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from tickwire._log import emit
from tickwire._runner.connect import Backoff
from tickwire.events import Event
from tickwire.metrics import ROW_BUCKETS, Metrics
from tickwire.protocols import RetentionSink, Sink
from tickwire.settings import SinkSettings
from tickwire.spill import DEFAULT_MAX_BYTES, Spill, encode, spill_path

INFO, WARNING, ERROR = 20, 30, 40
_IDLE = 1 << 62
#: Seconds between two ``sink.spill`` progress lines while a sink is spilling.
SPILL_LOG_EVERY = 10.0
#: Default ``spill_fsync_interval``.
DEFAULT_FSYNC_INTERVAL = 0.1


def _seconds(value: object, default: float) -> float:
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, int | float):
        return float(value)
    return default


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
        #: Per chunk in memory: its position in the write-ahead file (``None``: not in it).
        self._chunk_pos: deque[int | None] = deque()
        self.queued = 0
        #: ``time.monotonic()`` when the oldest event in memory was queued (``flush_interval``).
        self._oldest = 0.0
        self._closed = False
        self._data: anyio.Event | None = None
        self._space: anyio.Event | None = None
        #: The writer is woken once this many events are queued (``_IDLE``: it is not waiting).
        self._want = _IDLE
        self.writable = False
        self.written = 0
        self.dropped = 0
        #: Events accepted so far, in write order (what a spill file recovered comes first).
        self.accepted = 0
        #: ``(position, on_commit)``: call once ``written`` reaches ``position``.
        self._commits: deque[tuple[int, Callable[[], None]]] = deque()
        #: The write-ahead file for overflow (``None``: no spilling, the sources wait).
        self.spill: Spill | None = None
        #: Events the writer took from memory and has not written yet.
        self._inflight: list[Event] = []
        #: Spill position to commit once the batch in flight is written, and how many events of
        #: the file that covers (of which ``_inflight_mirrored`` came from memory).
        self._inflight_pos: int | None = None
        self._inflight_logged = 0
        self._inflight_mirrored = 0
        #: Events of the batch in flight that are not in the write-ahead file (a failed append).
        self._inflight_unlogged: list[Event] = []
        #: Every accepted chunk goes to the spill file first (``spill_mode = "write-ahead"``).
        self.write_ahead = False
        #: Events in memory (queued or in flight) that are in the write-ahead file too.
        self._mirrored = 0
        self._wal_failed = False
        self._spilling = False
        self._spill_full = False
        self._episode = 0
        self._last_spill_log = 0.0
        spill_dir = getattr(settings, "spill_dir", None)
        if spill_dir is not None:
            self.spill_to(
                spill_dir,
                getattr(settings, "spill_max_bytes", DEFAULT_MAX_BYTES),
                _seconds(getattr(settings, "spill_fsync_interval", None), DEFAULT_FSYNC_INTERVAL),
            )

    # ---- spilling ------------------------------------------------------------------------

    def spill_to(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = DEFAULT_MAX_BYTES,
        fsync_interval: float = DEFAULT_FSYNC_INTERVAL,
        mode: str | None = None,
    ) -> Spill:
        """Keep a write-ahead file at ``<directory>/<label>.wal``; replay what an earlier run
        left there.

        :param max_bytes: bound of the file; past it the sources wait (``sink.spill_full``).
        :param fsync_interval: seconds between two ``fsync`` of the file (0: every append). A
            machine crash loses at most this much of the appends.
        :param mode: ``"write-ahead"`` (every accepted event) or ``"overflow"`` (only what the
            full buffer has no room for); default: the sink's ``spill_mode``.
        """
        if self.spill is not None:
            self.spill.close()  # another file from now on: let go of this one
        mode = mode or getattr(self.settings, "spill_mode", "write-ahead")
        self.write_ahead = mode == "write-ahead"
        spill = Spill(spill_path(directory, self.label), max_bytes, fsync_interval)
        found = spill.recover()
        self.spill = spill
        self.accepted += found  # replayed before anything accepted from now on
        if found:
            emit(
                WARNING,
                "sink.spill_recovered",
                "replaying events a previous run spilled to disk",
                sink=self.label,
                events=found,
                bytes=spill.pending_bytes,
                path=str(spill.path),
            )
            self._spilling = True
            self._episode = 0
        self._spill_gauges()
        return spill

    @property
    def spilled(self) -> int:
        """Events waiting in the spill file only (overflow: not in memory)."""
        return self.spill.events - self._mirrored if self.spill is not None else 0

    def _spill_gauges(self) -> None:
        if self.spill is not None:
            self.metrics.set("sink_spill_bytes", self.spill.pending_bytes, sink=self.label)
            self.metrics.set("sink_spill_events", self.spilled, sink=self.label)

    def _refused(self, spill: Spill) -> bool:
        if not self._spill_full:
            self._spill_full = True
            self.metrics.inc("sink_spill_full_total", sink=self.label)
            emit(
                ERROR,
                "sink.spill_full",
                "the spill file is full: the sources now wait for this sink",
                sink=self.label,
                bytes=spill.size,
                max_bytes=spill.max_bytes,
                events=spill.events,
            )
        return False

    def _disk_failed(self, spill: Spill, exc: OSError, meanwhile: str) -> None:
        """Count an append the disk refused; say so once until an append succeeds again."""
        self.metrics.inc("sink_wal_errors_total", sink=self.label)
        if not self._wal_failed:
            self._wal_failed = True
            emit(
                ERROR,
                "sink.spill_failed",
                f"{exc}: {meanwhile} until the spill file can be written",
                sink=self.label,
                path=str(spill.path),
            )

    def _to_spill(self, spill: Spill, events: Sequence[Event]) -> bool:
        try:
            ok = spill.append(events)
        except OSError as exc:
            # The disk failed: nothing is written, so the sources wait (nothing is dropped).
            self._disk_failed(spill, exc, "the sources wait for this sink")
            return False
        if not ok:
            return self._refused(spill)
        self._spill_full = self._wal_failed = False
        self.metrics.inc("sink_spilled_total", len(events), sink=self.label)
        self._spill_gauges()
        self._episode += len(events)
        now = time.monotonic()
        if not self._spilling or now - self._last_spill_log >= SPILL_LOG_EVERY:
            emit(
                WARNING,
                "sink.spill",
                "the buffer is full: spilling to disk" if not self._spilling else "",
                sink=self.label,
                spilled=self._episode,
                events=spill.events,
                bytes=spill.pending_bytes,
                path=str(spill.path),
            )
            self._last_spill_log = now
        self._spilling = True
        if self._data is not None:
            self._data.set()
        return True

    # ---- the producer side ---------------------------------------------------------------

    def offer(
        self,
        events: Sequence[Event],
        on_commit: Callable[[], None] | None = None,
        payload: bytes | None = None,
    ) -> bool:
        """Queue ``events`` if there is room (in memory, else in the spill file); ``False``
        when the buffer is full and there is no spill file or it is full too.

        ``on_commit`` is called once these events (and all accepted before them) are written.
        ``payload``: the events already :func:`tickwire.spill.encode`-d (the fan-out encodes
        a chunk once for every write-ahead sink).
        """
        if not self._accept(events, payload):
            return False
        self.accepted += len(events)
        if on_commit is not None:
            self._commits.append((self.accepted, on_commit))
        return True

    def _accept(self, events: Sequence[Event], payload: bytes | None = None) -> bool:
        spill = self.spill
        if spill is not None and self.write_ahead:
            return self._accept_ahead(spill, events, payload)
        if spill is not None and spill.pending:
            # Older events wait on disk: these go after them, to keep the order.
            return self._to_spill(spill, events)
        if self.queued >= self.capacity and self.queued:
            if spill is None:
                return False
            return self._to_spill(spill, events)
        room = self.capacity - self.queued
        if spill is not None and len(events) > room > 0:
            # A batch larger than the room left: memory up to the bound, the rest to the spill
            # file (it is replayed after memory drains, so the order holds).
            if not self._to_spill(spill, events[room:]):
                return False
            events = events[:room]
        self._queue(events, None)
        return True

    def _queue(self, events: Sequence[Event], pos: int | None) -> None:
        if not self._chunks and self.flush_interval > 0:
            self._oldest = time.monotonic()
        self._chunks.append(events)
        self._chunk_pos.append(pos)
        self.queued += len(events)
        if self.queued >= self._want and self._data is not None:
            self._data.set()

    def _accept_ahead(self, spill: Spill, events: Sequence[Event], payload: bytes | None) -> bool:
        """Write-ahead: the chunk goes to the file, then to memory if there is room."""
        if spill.unread or self.queued + len(events) > self.capacity:
            # Older events wait on disk only, or memory has no room: this chunk waits there.
            if self._to_spill(spill, events):
                return True
            if self.queued or spill.pending:
                return False  # the sources wait until the writer frees room
            # Nothing else waits and the chunk alone passes the file's bound: memory takes it.
            self._queue(events, None)
            return True
        try:
            pos = spill.append_ahead(events, payload)
        except OSError as exc:
            # The disk failed: keep the events in memory, say once that a kill would lose them.
            self._disk_failed(spill, exc, "events wait in memory only")
            self._queue(events, None)
            return True
        if pos is None:
            return self._refused(spill)
        self._spill_full = self._wal_failed = False
        self._mirrored += len(events)
        self._queue(events, pos)
        return True

    async def put(
        self,
        events: Sequence[Event],
        on_commit: Callable[[], None] | None = None,
        payload: bytes | None = None,
    ) -> None:
        """Queue ``events``, waiting for room (backpressure) while the buffer is full."""
        if self.offer(events, on_commit, payload):
            return
        self.metrics.inc("sink_backpressure_total", sink=self.label)
        while not self.offer(events, on_commit, payload):
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

    def _unread_spill(self) -> bool:
        return self.spill is not None and self.spill.unread

    async def _next_batch(self) -> list[Event] | None:
        while not self._chunks and not self._unread_spill():
            if self._closed:
                return None
            await self._wait_for(1)
        if not self._chunks:
            # Memory is empty: the spill file is next (it holds only older events than any
            # that will reach memory after it drains).
            assert self.spill is not None
            from_disk, self._inflight_pos = self.spill.read(self.batch_size)
            self._inflight_logged = len(from_disk)
            self._inflight_mirrored = 0
            self._inflight_unlogged = []
            return from_disk
        if (
            self.flush_interval > 0
            and self.queued < self.batch_size
            and not self._closed
            and not self._unread_spill()
        ):
            # A partial batch may wait for more, until its oldest event has waited the flush
            # interval (0, the default: it is written now; a group commit, see the module).
            linger = self._oldest + self.flush_interval - time.monotonic()
            if linger > 0:
                with anyio.move_on_after(linger):
                    await self._wait_for(self.batch_size)
        batch: list[Event] = []
        chunks, positions = self._chunks, self._chunk_pos
        last: int | None = None
        mirrored = 0
        unlogged: list[Event] = []
        while chunks and len(batch) < self.batch_size:
            chunk = chunks.popleft()
            batch.extend(chunk)
            pos = positions.popleft()
            if pos is not None:
                last = pos
                mirrored += len(chunk)
            elif self.write_ahead:
                unlogged.extend(chunk)
        self.queued -= len(batch)
        self._inflight = batch
        self._inflight_pos = last
        self._inflight_logged = self._inflight_mirrored = mirrored
        self._inflight_unlogged = unlogged
        if self._space is not None:
            self._space.set()
        self.metrics.set("sink_queue", self.queued, sink=self.label)
        return batch

    def _written(self) -> None:
        """The batch in flight is stored: commit it in the spill file if it came from there."""
        self._inflight = []
        self._inflight_unlogged = []
        pos, self._inflight_pos = self._inflight_pos, None
        spill = self.spill
        if pos is None or spill is None:
            return
        spill.commit(pos, self._inflight_logged)
        self._mirrored -= self._inflight_mirrored
        self._inflight_logged = self._inflight_mirrored = 0
        self._spill_gauges()
        if self._space is not None:
            self._space.set()
        if self._spilling and not (spill.unread if self.write_ahead else spill.pending):
            self._spilling = False
            emit(
                INFO,
                "sink.spill_replayed",
                "the spill file is replayed and empty",
                sink=self.label,
                events=self._episode,
            )
            self._episode = 0

    async def _syncer(self, spill: Spill) -> None:
        """``fsync`` the spill file every ``fsync_interval``, in a worker thread: a disk that
        stalls for a few hundred milliseconds must not stall the event loop with it."""
        period = max(spill.fsync_interval, 0.01)
        while True:
            await anyio.sleep(period)
            fd = spill.take_sync()
            if fd is None:
                continue
            try:
                await anyio.to_thread.run_sync(os.fsync, fd)
            except OSError as exc:
                emit(ERROR, "sink.spill_failed", str(exc), sink=self.label, path=str(spill.path))
            finally:
                os.close(fd)

    def _save_unwritten(self) -> None:
        """At a cut-short shutdown: keep what memory still holds in the spill file, first."""
        spill = self.spill
        if spill is None:
            return
        if self.write_ahead:
            self._keep_ahead(spill)
            return
        leftover: list[Event] = list(self._inflight)
        for chunk in self._chunks:
            leftover.extend(chunk)
        if self._inflight_pos is not None:
            spill.unread_all()
        try:
            if leftover:
                spill.prepend(leftover)
                self._chunks.clear()
                self._inflight = []
                self.queued = 0
                self._saved(spill, len(leftover))
            elif spill.pending:
                self._saved(spill, 0)
            spill.close()
        except OSError as exc:
            emit(ERROR, "sink.spill_failed", str(exc), sink=self.label, path=str(spill.path))
        self._spill_gauges()

    def _saved(self, spill: Spill, events: int) -> None:
        emit(
            WARNING,
            "sink.spill_saved",
            "unwritten events kept in the spill file for the next run",
            sink=self.label,
            events=events,
            pending=spill.events,
            path=str(spill.path),
        )

    def _keep_ahead(self, spill: Spill) -> None:
        """Write-ahead shutdown: memory is in the file already; close it for the next run."""
        unlogged = list(self._inflight_unlogged)
        for chunk, pos in zip(self._chunks, self._chunk_pos, strict=True):
            if pos is None:
                unlogged.extend(chunk)
        self._chunks.clear()
        self._chunk_pos.clear()
        self._inflight = []
        self._inflight_unlogged = []
        self._inflight_pos = None
        self.queued = 0
        try:
            spill.unread_all()
            if unlogged:
                # Appends that failed while running (a disk error): kept last, if the disk
                # takes them now (every sink writes by key, so the order does not matter).
                spill.max_bytes, bound = 1 << 62, spill.max_bytes
                try:
                    spill.append(unlogged)
                finally:
                    spill.max_bytes = bound
            self._mirrored = 0
            if spill.pending:
                self._saved(spill, spill.events)
            spill.close()
        except OSError as exc:
            emit(ERROR, "sink.spill_failed", str(exc), sink=self.label, path=str(spill.path))
        self._spill_gauges()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Open the sink (retrying), then write batches until closed and drained.

        Cancelled before the buffer drained (the shutdown deadline passed), what memory still
        holds goes to the spill file, ahead of what is already there, for the next run.
        """
        opened = False
        try:
            async with anyio.create_task_group() as tg:
                if self.spill is not None:
                    tg.start_soon(self._syncer, self.spill)
                await self._open()
                opened = True
                self.writable = True
                emit(INFO, "sink.open", sink=self.label, type=self.settings.type)
                task_status.started()
                while (batch := await self._next_batch()) is not None:
                    if batch:
                        await self._write(batch)
                    self._written()
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                self._save_unwritten()
                if opened:
                    await self.sink.aclose()
                    emit(INFO, "sink.closed", sink=self.label, written=self.written)

    async def _open(self) -> None:
        backoff = Backoff(0.1, 30.0)
        while True:
            try:
                await self.sink.open()
                return
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

    async def _write(self, batch: list[Event]) -> None:
        backoff: Backoff | None = None  # made at the first failure (seeding it costs)
        hist = self.metrics.histogram("sink_write_seconds", sink=self.label)
        rows = self.metrics.histogram("sink_batch_rows", buckets=ROW_BUCKETS, sink=self.label)
        while True:
            started = time.perf_counter()
            try:
                await self.sink.write_batch(batch)
            except Exception as exc:
                self.writable = False
                backoff = backoff or Backoff(0.1, 30.0)
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
            rows.observe(len(batch))
            if not self.writable:
                emit(INFO, "sink.restored", sink=self.label, rows=len(batch))
            self.writable = True
            self.written += len(batch)
            commits = self._commits
            while commits and commits[0][0] <= self.written:
                commits.popleft()[1]()
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

    async def publish(
        self, events: Sequence[Event], on_commit: Callable[[], None] | None = None
    ) -> None:
        """Give ``events`` to every sink, waiting where a buffer is full.

        ``on_commit`` is called once every sink has written them (taps do not count).
        """
        if on_commit is not None:
            if not self.targets:
                on_commit()
                on_commit = None
            elif len(self.targets) > 1:
                on_commit = _Countdown(len(self.targets), on_commit)
        payload = None
        if len(self.targets) > 1 and sum(t.write_ahead for t in self.targets) > 1:
            payload = encode(events)  # once, for every write-ahead file
        for target in self.targets:
            if not target.offer(events, on_commit, payload):
                await target.put(events, on_commit, payload)
        for tap in tuple(self.taps):
            try:
                tap.send_nowait(events)
            except anyio.WouldBlock:
                await tap.send(events)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.taps.remove(tap)


class _Countdown:
    """Calls ``done`` on the ``n``-th call: one commit per sink."""

    __slots__ = ("done", "left")

    def __init__(self, n: int, done: Callable[[], None]) -> None:
        self.left = n
        self.done = done

    def __call__(self) -> None:
        self.left -= 1
        if self.left == 0:
            self.done()


def backlog_seconds(sink: RunningSink) -> float:
    """A rough drain time of the buffer at the observed write rate (for the live view)."""
    hist = sink.metrics.histogram("sink_write_seconds", sink=sink.label)
    if not hist.count or not sink.queued:
        return 0.0
    per_row = hist.total / max(sink.written, 1)
    return math.ceil(per_row * sink.queued * 100) / 100


__all__ = ("Fanout", "RunningSink", "backlog_seconds")
