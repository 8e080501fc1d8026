"""Spill-to-disk: a bounded write-ahead file per sink for the events its buffer has no room for.

When a sink is down or slow and its in-memory buffer is full, the runner appends the overflow
to ``<spill_dir>/<sink label>.wal`` instead of blocking the sources, and replays it (oldest
first, before anything newer) once the sink writes again. A WAL left by a crashed run is
replayed when the next run starts.

File format (little-endian)::

    header  : b"TWSPILL1" | committed offset (u64) | crc32 of the offset (u32)
    record* : payload length (u32) | event count (u32) | crc32 of count+payload (u32) | payload

Each payload is one chunk of events as a MessagePack array (:mod:`msgspec`; decimals as
strings, tagged by event type). The header's committed offset says where the events not yet
written to the sink begin; it is rewritten in place after each replayed batch, and the whole
file is truncated once everything is replayed. A record whose length or CRC does not check out
(a torn tail after a hard kill) ends the file: it and anything after it are dropped, with a
``sink.spill_torn`` log line.

Durability: appends reach the page cache at once and are ``fsync``-ed every ``fsync_interval``
seconds (0: after every append). A process crash loses nothing that was appended; a hard kill
of the machine (power loss) loses at most the last ``fsync_interval`` of overflow. A replay cut
short by a crash starts again from the last committed offset, so a sink may see a few batches
twice: every tickwire sink writes idempotently (by key), so that stores nothing twice.
"""

from __future__ import annotations

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
    """

    def __init__(
        self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES, fsync_interval: float = 0.1
    ) -> None:
        self.path = path
        self.max_bytes = max(max_bytes, HEADER_SIZE + 64)
        self.fsync_interval = fsync_interval
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
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.ftruncate(self._fd, 0)
            self._end = self._commit = self._read = HEADER_SIZE
            self._write_header(HEADER_SIZE)
        return self._fd

    def _write_header(self, commit: int) -> None:
        assert self._fd is not None
        crc = zlib.crc32(commit.to_bytes(8, "little"))
        os.pwrite(self._fd, _HEADER.pack(MAGIC, commit, crc), 0)

    # ---- appending -----------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> bool:
        """Append one chunk; ``False`` (nothing written) when the file would pass its bound."""
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
                return False
            fd = self._open()
        os.pwrite(fd, record, self._end)
        self._end += len(record)
        self.events += count
        self._dirty = True
        if self.fsync_interval <= 0:
            self.sync()
        else:
            self.sync_due()
        return True

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
        """Drop the replayed head of the file (only when no batch read from it is in flight)."""
        if self._commit == HEADER_SIZE or self._read != self._commit:
            return False
        self._rewrite()
        return True

    def _rewrite(self, prefix: Sequence[Event] = ()) -> None:
        assert self._fd is not None
        tmp = self.path.with_suffix(".wal.tmp")
        out = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
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
        os.close(self._fd)
        os.replace(tmp, self.path)
        self._fd = out
        self._end = pos
        self._commit = self._read = HEADER_SIZE
        self.events += added
        self._read_events = 0
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
        return batch, pos

    def unread_all(self) -> None:
        """Forget what :meth:`read` handed out (it was not written): it is read again."""
        self._read = self._commit
        self._read_events = 0

    def commit(self, pos: int) -> None:
        """Everything before ``pos`` is written to the sink: drop it (truncate when empty)."""
        if self._fd is None or pos <= self._commit:
            return
        if pos >= self._end:
            self._reset()
            return
        self._commit = pos
        self.events -= self._read_events
        self._read_events = 0
        self._write_header(pos)

    def _reset(self) -> None:
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

    def close(self) -> None:
        """Sync and close; remove the file when nothing is pending."""
        if self._fd is None:
            return
        self.sync()
        os.close(self._fd)
        self._fd = None
        if not self.pending:
            self.path.unlink(missing_ok=True)


__all__ = ("DEFAULT_MAX_BYTES", "HEADER_SIZE", "MAGIC", "Spill", "spill_path")
