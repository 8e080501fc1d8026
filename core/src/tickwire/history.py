"""Coverage arithmetic for stored history: which buckets are held, which are missing.

Pure functions, shared by the start-up bootstrap, ``tickwire backfill`` and ``tickwire gaps``.
A bucket counts as covered when the store holds its candle, or when a fetch of a span that
includes it has been recorded (a ``Gap`` row with status ``filled`` or ``empty``): exchanges send
no candle for a bucket without trades, so "no row" alone cannot tell "never fetched" from "there
was nothing".
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

#: ``market_open(start_ns, end_ns)``: whether the market traded at some point in that span.
MarketHours = Callable[[int, int], bool]


def align(ts: int, length: int) -> int:
    """The start of the bucket of length ``length`` that holds ``ts``."""
    return ts - ts % length


def merge(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, non-overlapping union of half-open spans ``[start, end)``."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def missing_spans(
    start: int,
    end: int,
    length: int,
    stored: Sequence[int],
    covered: Iterable[tuple[int, int]] = (),
) -> list[tuple[int, int]]:
    """The spans of whole buckets in ``[start, end)`` that are neither stored nor covered.

    ``start`` and ``end`` are rounded out to bucket bounds; ``stored`` holds bucket starts; a
    ``covered`` span covers the buckets that lie wholly inside it.
    """
    start = align(start, length)
    end = _ceil(end, length)
    have = merge(
        [
            *((s, s + length) for s in stored),
            *((_ceil(s, length), align(e, length)) for s, e in covered),
        ]
    )
    out: list[tuple[int, int]] = []
    cursor = start
    for s, e in have:
        if e <= cursor:
            continue
        if s >= end:
            break
        if s > cursor:
            out.append((cursor, s))
        cursor = e
    if cursor < end:
        out.append((cursor, end))
    return out


def _ceil(ts: int, length: int) -> int:
    return -(-ts // length) * length


def candle_gaps(
    starts: Sequence[int],
    length: int,
    market_open: MarketHours | None = None,
) -> list[tuple[int, int]]:
    """Holes in a stored candle series: consecutive candles more than 1.5 intervals apart.

    Returns the spans between them (``[previous start + length, next start)``), keeping only
    those during which the market was open (all of them when ``market_open`` is ``None``).
    """
    out: list[tuple[int, int]] = []
    for previous, current in itertools.pairwise(starts):
        if current - previous > length * 3 // 2:
            span = (previous + length, current)
            if market_open is None or market_open(*span):
                out.append(span)
    return out


def chunks(start: int, end: int, size: int) -> list[tuple[int, int]]:
    """``[start, end)`` cut into consecutive spans of at most ``size``."""
    return [(s, min(s + size, end)) for s in range(start, end, size)]


__all__ = ("MarketHours", "align", "candle_gaps", "chunks", "merge", "missing_spans")
