"""The dead-letter file: raw frames tickwire could not read, kept aside for a person to inspect.

One JSON object per line in ``<folder>/<source>.jsonl``: ``time``, ``source``, ``provider``,
``reason`` and the ``frame`` as text. The file is bounded: when it passes half of
``max_bytes`` it is rotated to ``<source>.jsonl.1`` (the older rotation is dropped), so the two
together never hold more than ``max_bytes``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tickwire._log import emit

_SAFE = re.compile(r"[^A-Za-z0-9_.#-]+")
#: Longest frame kept whole; longer ones are cut (their size is recorded).
MAX_FRAME_CHARS = 64 * 1024


class DeadLetter:
    """Appends malformed frames to a bounded, rotated JSON-lines file per source."""

    def __init__(self, folder: Path, max_bytes: int = 16 * 1024 * 1024) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self.count = 0
        self._failed = False

    def path_for(self, source: str) -> Path:
        """The file a source's frames go to."""
        return self.folder / f"{_SAFE.sub('_', source)}.jsonl"

    def keep(self, source: str, provider: str, reason: str, frame: bytes | str) -> None:
        """Write one frame aside; a failure to write is logged once and never raised."""
        text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
        record = {
            "time": time.time_ns(),
            "source": source,
            "provider": provider,
            "reason": reason,
            "size": len(text),
            "frame": text[:MAX_FRAME_CHARS],
        }
        line = json.dumps(record, ensure_ascii=False) + "\n"
        path = self.path_for(source)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size + len(line) > self.max_bytes // 2:
                path.replace(path.with_name(path.name + ".1"))
            with path.open("a", encoding="utf-8") as fh:
                fh.write(line)
            self.count += 1
        except OSError as exc:
            if not self._failed:
                self._failed = True
                emit(40, "deadletter.failed", str(exc), path=str(path))


__all__ = ("MAX_FRAME_CHARS", "DeadLetter")
