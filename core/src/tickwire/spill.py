"""Spill-to-disk: a bounded write-ahead file per sink.

Every event a sink accepts is appended to ``<spill_dir>/<sink label>.wal`` before it waits in
memory (``spill_mode = "write-ahead"``, the default), and the file's head is committed as the
sink writes; when the sink is down or slow and its in-memory buffer is full, the overflow goes
to the file only, instead of blocking the sources, and is replayed (oldest first, before
anything newer) once the sink writes again. With ``spill_mode = "overflow"`` only that overflow
is written. A WAL left by a crashed or killed run is replayed when the next run starts.

File format (little-endian)::

    header  : b"TWSPILL1" | committed offset (u64) | crc32 of the offset (u32)
    record* : payload length (u32) | event count (u32) | crc32 of count+payload (u32) | payload

Each payload is one chunk of events as a MessagePack array (:mod:`msgspec`; decimals as
strings, tagged by event type). The header's committed offset says where the events not yet
written to the sink begin; it is rewritten in place after each replayed batch, and the whole
file is truncated once everything is replayed. A record whose length or CRC does not check out
(a torn tail after a hard kill) ends the file: it and anything after it are dropped, with a
``sink.spill_torn`` log line.

Positions handed out (by :meth:`Spill.read` and :meth:`Spill.append_ahead`) are logical: they
keep growing when the committed head is cut off (the file is rewritten from its first
uncommitted record once the head passes ``compact_bytes``, or truncated when all is written).

Durability: appends reach the page cache at once and are ``fsync``-ed every ``fsync_interval``
seconds by the running sink, in a worker thread (a slow disk does not stall the event loop; 0:
after every append, on the loop). A process crash or SIGKILL loses nothing that was appended; a
hard kill of the machine (power loss) loses at most the last ``fsync_interval`` of appends. A
replay cut short by a crash starts again from the last committed offset, so a sink may see a
few batches twice: every tickwire sink writes idempotently (by key), so that stores nothing
twice.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
import time
import zlib
from collections.abc import Sequence
from pathlib import Path

import msgspec

from tickwire._log import emit
from tickwire.events import Event

MAGIC = b"TWSPILL1"
_HEADER = struct.Struct("<8sQI")
_RECORD = struct.Struct("<III")
HEADER_SIZE = _HEADER.size
RECORD_OVERHEAD = _RECORD.size
#: One record never holds more than this (a larger length is a torn or corrupt header).
MAX_RECORD = 1 << 30
#: Default bound of a sink's spill file.
DEFAULT_MAX_BYTES = 1 << 30

_SAFE = re.compile(r"[^A-Za-z0-9_.#-]+")
_encoder = msgspec.msgpack.Encoder(decimal_format="string")
_decoder: msgspec.msgpack.Decoder[list[Event]] = msgspec.msgpack.Decoder(list[Event])

WARNING = 30


class SpillInUse(OSError):
    """Another process (or another sink of this one) holds this spill file."""


def _lock(fd: int, path: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpillInUse(
            f"spill file {path} is in use by another tickwire pipeline: give each process its "
            "own [runner] spill_dir (or each sink its own name)"
        ) from None


def encode(events: Sequence[Event]) -> bytes:
    """One chunk of events as a record payload (encode once, append to several files)."""
    return _encoder.encode(list(events))


def spill_path(directory: str | os.PathLike[str], label: str) -> Path:
    """The spill file of the sink labelled ``label`` in ``directory``."""
    return Path(directory) / f"{_SAFE.sub('_', label) or 'sink'}.wal"


class Spill:
    """One sink's bounded write-ahead file (see the module docstring for the format).

    Not thread-safe: the runner calls it from its event loop only. Positions are file offsets;
    :meth:`read` hands out the position after the records it returned, and :meth:`commit` of
    that position marks them written.

    :param path: the file (created, with its folder, on the first append).
    :param max_bytes: the largest the file may grow; :meth:`append` refuses past it.
    :param fsync_interval: seconds between two ``fsync`` calls of appended data; 0 syncs after
        every append.
    :param compact_bytes: once this many committed bytes head the file, it is rewritten
        without them (write-ahead use: the file never empties under a steady flow).
    """

    def __init__(
        self,
        path: Path,
        max_bytes: int = DEFAULT_MAX_BYTES,
        fsync_interval: float = 0.1,
        compact_bytes: int | None = None,
    ) -> None:
        self.path = path
        self.max_bytes = max(max_bytes, HEADER_SIZE + 64)
        self.fsync_interval = fsync_interval
        self.compact_bytes = (
            compact_bytes if compact_bytes is not None else min(64 << 20, self.max_bytes // 4)
        )
        #: Logical position = physical offset + ``_shift`` (grows as the head is cut off).
        self._shift = 0
        self._fd: int | None = None
        self._end = HEADER_SIZE
        self._commit = HEADER_SIZE
        self._read = HEADER_SIZE
        #: Events appended and not yet committed.
        self.events = 0
        self._read_events = 0
        self._dirty = False
        self._last_sync = time.monotonic()
        #: Events and records found (and bytes dropped as torn) when an old file was opened.
        self.recovered = 0
        self.torn_bytes = 0

    # ---- state ---------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        """Events are in the file that the sink has not yet written (order: they go first)."""
        return self._end > self._commit

    @property
    def unread(self) -> bool:
        """Records are in the file that :meth:`read` has not handed out yet."""
        return self._end > self._read

    @property
    def size(self) -> int:
        """The file's size in bytes (0 when there is no file)."""
        return self._end if self._fd is not None else 0

    @property
    def pending_bytes(self) -> int:
        """Bytes of events not yet written to the sink."""
        return self._end - self._commit

    # ---- opening and recovery -----------------------------------------------------------

    def recover(self) -> int:
        """Open a file left by an earlier run, drop a torn tail; return the events it holds."""
        if not self.path.exists():
            return 0
        fd = os.open(self.path, os.O_RDWR)
        _lock(fd, self.path)
        self._fd = fd
        size = os.fstat(fd).st_size
        header = os.pread(fd, HEADER_SIZE, 0)
        commit = HEADER_SIZE
        if len(header) == HEADER_SIZE:
            magic, offset, crc = _HEADER.unpack(header)
            if magic == MAGIC and crc == zlib.crc32(offset.to_bytes(8, "little")):
                commit = max(HEADER_SIZE, min(offset, size))
        pos, events = commit, 0
        while pos + RECORD_OVERHEAD <= size:
            length, count, crc = _RECORD.unpack(os.pread(fd, RECORD_OVERHEAD, pos))
            if length > MAX_RECORD or pos + RECORD_OVERHEAD + length > size:
                break
            payload = os.pread(fd, length, pos + RECORD_OVERHEAD)
            if zlib.crc32(payload, zlib.crc32(count.to_bytes(4, "little"))) != crc:
                break
            pos += RECORD_OVERHEAD + length
            events += count
        if pos < size:
            self.torn_bytes = size - pos
            emit(
                WARNING,
                "sink.spill_torn",
                "dropped a torn record at the end of the spill file (a hard kill mid-append)",
                path=str(self.path),
                bytes=self.torn_bytes,
            )
            os.ftruncate(fd, pos)
        self._commit = self._read = commit
        self._end = pos
        self.events = events
        self.recovered = events
        if pos == commit:
            self._reset()
        else:
            self._write_header(commit)
            os.fsync(fd)
        return events

    def _open(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            _lock(fd, self.path)
            self._fd = fd
            os.ftruncate(fd, 0)
            self._end = self._commit = self._read = HEADER_SIZE
            self._write_header(HEADER_SIZE)
        return self._fd

    def _write_header(self, commit: int) -> None:
        assert self._fd is not None
        crc = zlib.crc32(commit.to_bytes(8, "little"))
        os.pwrite(self._fd, _HEADER.pack(MAGIC, commit, crc), 0)

    # ---- appending -----------------------------------------------------------------------

    def append(self, events: Sequence[Event], payload: bytes | None = None) -> bool:
        """Append one chunk; ``False`` (nothing written) when the file would pass its bound.

        ``payload``: the chunk already :func:`encode`-d.
        """
        return self._append(events, payload) is not None

    def append_ahead(self, events: Sequence[Event], payload: bytes | None = None) -> int | None:
        """Append a chunk that also waits in memory: it counts as read already.

        Returns the position to :meth:`commit` once the chunk is written to the sink (``None``:
        nothing appended, the file would pass its bound). Only while nothing is unread: the
        chunk must be the newest thing the sink will write.
        """
        assert not self.unread, "a write-ahead chunk must not pass unread overflow"
        end = self._append(events, payload)
        if end is not None:
            self._read = self._end
        return end

    def _append(self, events: Sequence[Event], payload: bytes | None) -> int | None:
        if payload is None:
            payload = _encoder.encode(list(events))
        count = len(events)
        record = (
            _RECORD.pack(
                len(payload),
                count,
                zlib.crc32(payload, zlib.crc32(count.to_bytes(4, "little"))),
            )
            + payload
        )
        fd = self._open()
        if self._end + len(record) > self.max_bytes:
            if not self._compact() or self._end + len(record) > self.max_bytes:
                return None
            fd = self._open()
        os.pwrite(fd, record, self._end)
        self._end += len(record)
        self.events += count
        self._dirty = True
        if self.fsync_interval <= 0:
            self.sync()
        return self._end + self._shift

    def prepend(self, events: Sequence[Event]) -> None:
        """Put ``events`` before everything pending (at shutdown: the unwritten memory buffer).

        Rewrites the file; ignores the size bound (these events have nowhere else to go).
        """
        if not events:
            return
        if not self.pending:
            self._reset()
            self.max_bytes, bound = 1 << 62, self.max_bytes
            try:
                self.append(events)
            finally:
                self.max_bytes = bound
            self.sync()
            return
        self._rewrite(prefix=events)

    def _compact(self) -> bool:
        """Drop the written head of the file (positions handed out stay valid)."""
        if self._commit == HEADER_SIZE:
            return False
        self._rewrite()
        return True

    def _rewrite(self, prefix: Sequence[Event] = ()) -> None:
        assert self._fd is not None
        tmp = self.path.with_suffix(".wal.tmp")
        out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(out, fcntl.LOCK_EX)  # a new file: held before it takes the path
        try:
            pos = HEADER_SIZE
            added = 0
            if prefix:
                payload = _encoder.encode(list(prefix))
                count = len(prefix)
                crc = zlib.crc32(payload, zlib.crc32(count.to_bytes(4, "little")))
                record = _RECORD.pack(len(payload), count, crc) + payload
                os.pwrite(out, record, pos)
                pos += len(record)
                added = count
            head = pos
            src = self._commit
            while src < self._end:
                chunk = os.pread(self._fd, min(1 << 22, self._end - src), src)
                os.pwrite(out, chunk, pos)
                pos += len(chunk)
                src += len(chunk)
            crc = zlib.crc32(HEADER_SIZE.to_bytes(8, "little"))
            os.pwrite(out, _HEADER.pack(MAGIC, HEADER_SIZE, crc), 0)
            os.fsync(out)
        except BaseException:
            os.close(out)
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.path)
        os.close(self._fd)
        self._fd = out
        # The first uncommitted record moves from ``_commit`` to ``head``.
        cut = self._commit - head
        self._end = pos
        self._shift += cut
        if prefix:
            # At shutdown: everything is read again at the next start.
            self._read = HEADER_SIZE
            self._read_events = 0
        else:
            self._read -= cut
        self._commit = HEADER_SIZE
        self.events += added
        self._dirty = False
        self._last_sync = time.monotonic()

    # ---- reading and committing ----------------------------------------------------------

    def read(self, max_events: int) -> tuple[list[Event], int]:
        """The next records (at least one, about ``max_events`` events) and the position after."""
        assert self._fd is not None
        batch: list[Event] = []
        pos = self._read
        while pos < self._end and len(batch) < max_events:
            length, _count, _crc = _RECORD.unpack(os.pread(self._fd, RECORD_OVERHEAD, pos))
            payload = os.pread(self._fd, length, pos + RECORD_OVERHEAD)
            batch.extend(_decoder.decode(payload))
            pos += RECORD_OVERHEAD + length
        self._read_events += len(batch)
        self._read = pos
        return batch, pos + self._shift

    def unread_all(self) -> None:
        """Forget what :meth:`read` handed out (it was not written): it is read again."""
        self._read = self._commit
        self._read_events = 0

    def commit(self, pos: int, events: int | None = None) -> None:
        """Everything before ``pos`` is written to the sink: drop it (truncate when empty).

        ``events``: how many events that was (default: all :meth:`read` handed out).
        """
        pos -= self._shift
        if self._fd is None or pos <= self._commit:
            return
        if pos >= self._end:
            self._reset()
            return
        self._commit = pos
        self.events -= self._read_events if events is None else events
        self._read_events = 0
        self._write_header(pos)
        if pos - HEADER_SIZE >= self.compact_bytes and self._end - pos <= pos - HEADER_SIZE:
            # The written head is large, and larger than what a rewrite copies: cut it off.
            self._rewrite()

    def _reset(self) -> None:
        self._shift += self._end - HEADER_SIZE
        self._end = self._commit = self._read = HEADER_SIZE
        self.events = self._read_events = 0
        if self._fd is not None:
            os.ftruncate(self._fd, HEADER_SIZE)
            self._write_header(HEADER_SIZE)

    # ---- durability ----------------------------------------------------------------------

    def sync(self) -> None:
        """``fsync`` what was appended."""
        if self._fd is not None and self._dirty:
            os.fsync(self._fd)
            self._dirty = False
        self._last_sync = time.monotonic()

    def sync_due(self) -> None:
        """``fsync`` if data is waiting and ``fsync_interval`` has passed since the last one."""
        if self._dirty and time.monotonic() - self._last_sync >= self.fsync_interval:
            self.sync()

    def take_sync(self) -> int | None:
        """For an ``fsync`` off the event loop: a duplicate of the file's descriptor when data
        is waiting (the caller fsyncs and closes it), else ``None``.

        The duplicate keeps the file open, so a rewrite or close meanwhile cannot hand its
        number to another file; what is appended after this call waits for the next sync.
        """
        if self._fd is None or not self._dirty:
            return None
        self._dirty = False
        self._last_sync = time.monotonic()
        return os.dup(self._fd)

    def close(self) -> None:
        """Sync and close; remove the file when nothing is pending."""
        if self._fd is None:
            return
        self.sync()
        os.close(self._fd)
        self._fd = None
        if not self.pending:
            self.path.unlink(missing_ok=True)


__all__ = (
    "DEFAULT_MAX_BYTES",
    "HEADER_SIZE",
    "MAGIC",
    "Spill",
    "SpillInUse",
    "encode",
    "spill_path",
)
