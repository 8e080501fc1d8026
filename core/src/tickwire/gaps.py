"""Gap detection shared by every provider: trade-id holes, heartbeats and disconnect windows.

* **sequence**: for providers whose trade ids go up by one per symbol
  (``Capabilities.trade_ids == "sequential"``), a trade whose id jumps past ``last + 1`` means
  trades were missed between the two; a heartbeat whose ``last_trade_id`` stays ahead of the
  last trade received for a whole heartbeat period means the same.
* **disconnect**: for the others, the window from the last event before a connection dropped
  to the first event after it came back, per symbol.

Each finding is a :class:`~tickwire.events.Gap` event: stored by the sinks and handed to the
provider's backfill hook. The gaps the detector reports for one symbol never overlap: a span
that starts inside one already reported is cut to begin where that one ended (and dropped when
it ends inside it), so the stored gaps never show the same span twice.

Gaps from elsewhere (a provider that reports its own, the candle refetch after a trade gap, the
seam between bootstrap and stream) can still overlap. :func:`group_gaps` finds the runs of gaps
of one provider, symbol and kind that overlap or touch; the backfill fetches each run's union
once (:func:`union_gap`) and writes one row per gap start (:func:`split_rows`), so every stored
gap is resolved and no two rows cover the same span.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence

import msgspec

from tickwire.events import Event, Gap, GapReason, Trade, event_time
from tickwire.protocols import Heartbeat


class GapDetector:
    """Finds missing trades for one provider.

    :param provider: the provider name events carry.
    :param sequential: trade ids are integers that go up by one per symbol.
    """

    __slots__ = (
        "_down",
        "_last_id",
        "_last_ts",
        "_pending_hb",
        "_reported",
        "provider",
        "replayed",
        "sequential",
    )

    def __init__(self, provider: str, *, sequential: bool) -> None:
        self.provider = provider
        self.sequential = sequential
        self._last_id: dict[str, int] = {}
        self._last_ts: dict[str, int] = {}
        self._down: dict[str, int] = {}
        self._pending_hb: dict[str, int] = {}
        #: The end of the last gap reported per symbol: a later gap starts there at the earliest.
        self._reported: dict[str, int] = {}
        #: The last batch's trades whose id was already seen (see :meth:`process`).
        self.replayed: list[Trade] = []

    def _gap(self, out: list[Gap], symbol: str, start: int, end: int, reason: GapReason) -> None:
        """Report ``[start, end)`` less what was already reported for ``symbol`` (if any).

        A gap that ends where (or before) the last one ended is inside it: not reported again.
        A gap of no length (the missing trades had the same timestamp as those around them) is
        still reported: it says trades are missing at that instant.
        """
        reported = self._reported.get(symbol)
        if reported is not None:
            if end <= reported:
                return
            start = max(start, reported)
        self._reported[symbol] = end if reported is None else max(end, reported)
        out.append(Gap(self.provider, symbol, "trades", start, end, reason))

    def process(self, events: Sequence[Event]) -> list[Gap]:
        """Look at a batch of events; return the gaps they reveal.

        Afterwards :attr:`replayed` holds the batch's trades whose sequential id was seen
        before (a replay, or one that came after its gap was reported): the candle builder
        leaves them out, so a reconnect does not count a trade twice.
        """
        gaps: list[Gap] = []
        replayed = self.replayed
        if replayed:
            replayed.clear()
        last_id = self._last_id
        last_ts = self._last_ts
        down = self._down
        for event in events:
            if type(event) is not Trade:
                continue
            assert isinstance(event, Trade)
            symbol = event.symbol
            since = down.pop(symbol, None) if down else None
            if since is not None and not self.sequential and event.ts > since:
                self._gap(gaps, symbol, since, event.ts, "disconnect")
            if self.sequential and event.trade_id is not None:
                try:
                    tid = int(event.trade_id)
                except ValueError:
                    tid = None
                if tid is not None:
                    prev = last_id.get(symbol)
                    if prev is not None and tid > prev + 1:
                        start = last_ts.get(symbol, event.ts)
                        reason: GapReason = "disconnect" if since is not None else "sequence"
                        self._gap(gaps, symbol, start, event.ts, reason)
                    if prev is None or tid > prev:
                        last_id[symbol] = tid
                        last_ts[symbol] = event.ts
                    else:
                        # Seen already: a provider replays its last trade on (re)subscribing
                        # (Coinbase's last_match). Stored idempotently; not counted twice.
                        replayed.append(event)
                    self._pending_hb.pop(symbol, None)
                    continue
            if event.ts > last_ts.get(symbol, 0):
                last_ts[symbol] = event.ts
        return gaps

    def heartbeat(self, hb: Heartbeat, now_ns: int) -> list[Gap]:
        """A heartbeat whose ``last_trade_id`` stays ahead of what arrived reveals a gap.

        The first heartbeat ahead is only noted (its trade may be on the way on another
        channel); if the next one is still ahead, the gap is reported from the last trade
        received to now, and the trade-id count is moved on so it is reported once.
        """
        if not self.sequential or hb.symbol is None or hb.last_trade_id is None:
            return []
        try:
            advertised = int(hb.last_trade_id)
        except ValueError:
            return []
        symbol = hb.symbol
        prev = self._last_id.get(symbol)
        if prev is None or advertised <= prev:
            self._pending_hb.pop(symbol, None)
            return []
        if symbol not in self._pending_hb:
            self._pending_hb[symbol] = advertised
            return []
        self._pending_hb.pop(symbol, None)
        start = self._last_ts.get(symbol, now_ns)
        end = hb.ts if hb.ts is not None and hb.ts > start else now_ns
        self._last_id[symbol] = advertised
        self._last_ts[symbol] = end
        gaps: list[Gap] = []
        self._gap(gaps, symbol, start, end, "sequence")
        return gaps

    def disconnected(self, symbols: Iterable[str], now_ns: int) -> None:
        """A connection carrying ``symbols`` dropped: open a disconnect window for each."""
        for symbol in symbols:
            self._down.setdefault(symbol, self._last_ts.get(symbol, now_ns))


def _key(gap: Gap) -> tuple[str, str, str]:
    return (gap.provider, gap.symbol, gap.kind)


def group_gaps(gaps: Iterable[Gap]) -> list[list[Gap]]:
    """The runs of ``gaps`` to fetch together: same provider, symbol and kind, overlapping or
    touching (``[0, 5)`` and ``[5, 9)`` are one run), transitively.

    Each run is sorted by start; runs come in the order their key first appears, then by start.
    A gap whose ``end`` is not after its ``start`` holds nothing: it joins a run it touches, or
    is a run of its own.
    """
    by_key: dict[tuple[str, str, str], list[Gap]] = {}
    for gap in gaps:
        by_key.setdefault(_key(gap), []).append(gap)
    runs: list[list[Gap]] = []
    for members in by_key.values():
        members.sort(key=lambda g: (g.start, g.end))
        run: list[Gap] = []
        reach = 0
        for gap in members:
            if run and gap.start <= reach:
                run.append(gap)
                reach = max(reach, gap.end)
            else:
                if run:
                    runs.append(run)
                run = [gap]
                reach = max(gap.start, gap.end)
        if run:
            runs.append(run)
    return runs


def union_gap(run: Sequence[Gap]) -> Gap:
    """One gap spanning a run from :func:`group_gaps` (its first gap's reason): what to fetch."""
    first = run[0]
    end = max(max(g.end for g in run), first.start)
    if len(run) == 1 and first.end == end:
        return first
    return Gap(first.provider, first.symbol, first.kind, first.start, end, first.reason)


def split_rows(run: Sequence[Gap]) -> list[Gap]:
    """The rows that record a run's outcome: one per distinct start, cut where the next begins.

    Sinks keep one gap row per start, so each gap found (and perhaps stored ``open``) gets its
    outcome under its own key, and together the rows cover the run's union exactly, without
    overlapping. Statuses are left as they were; the caller sets them.
    """
    if len(run) == 1:
        return [run[0]]
    end = max(max(g.end for g in run), run[0].start)
    firsts: dict[int, Gap] = {}
    for gap in run:
        firsts.setdefault(gap.start, gap)
    starts = sorted(firsts)
    rows = []
    for i, start in enumerate(starts):
        stop = starts[i + 1] if i + 1 < len(starts) else end
        gap = firsts[start]
        rows.append(gap if gap.end == stop else msgspec.structs.replace(gap, end=stop))
    return rows


def rows_with_events(rows: Sequence[Gap], events: Iterable[Event]) -> list[bool]:
    """For each row of :func:`split_rows`, whether one of ``events`` falls in it.

    An event is placed by its event time; one before the first row counts for the first, one
    past the last row for the last (a provider may return the whole bucket that holds a start).
    """
    starts = [r.start for r in rows]
    seen = [False] * len(rows)
    for event in events:
        seen[max(bisect.bisect_right(starts, event_time(event)) - 1, 0)] = True
    return seen


__all__ = ("GapDetector", "group_gaps", "rows_with_events", "split_rows", "union_gap")
