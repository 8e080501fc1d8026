"""Contract checks for sink plugins, run against the plugin's own real store."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable
from decimal import Decimal

import msgspec

from tickwire._runner.sink import RunningSink
from tickwire.events import KIND, NS_PER_SECOND, Candle, Event, Gap, Quote, Trade, event_time
from tickwire.metrics import Metrics
from tickwire.protocols import GapSink, RetentionSink, Sink
from tickwire.settings import SinkSettings

#: ``count(kind)`` returns how many rows (or entries) of ``kind`` the store holds for the
#: provider ``"conformance"``: kinds are ``trade``, ``quote``, ``candle`` and ``gap``.
Counter = Callable[[str], Awaitable[int]]

PROVIDER = "conformance"


def sample_events(now_ns: int | None = None, n: int = 50) -> list[Event]:
    """A mixed batch: trades with and without ids, quotes, candles and a gap, all recent."""
    now = now_ns or time.time_ns()
    base = now - now % (60 * NS_PER_SECOND) - 600 * NS_PER_SECOND
    events: list[Event] = []
    for i in range(n):
        ts = base + i * NS_PER_SECOND
        price = Decimal("100.10") + Decimal(i) / 100
        events.append(
            Trade(
                PROVIDER,
                "AAA-USD",
                ts,
                ts + 1000,
                price,
                Decimal("0.50000000"),
                "buy" if i % 2 else "sell",
                str(1000 + i),
            )
        )
        events.append(Trade(PROVIDER, "BBB-USD", ts, ts + 1000, price, Decimal("1"), None, None))
        events.append(
            Quote(
                PROVIDER, "AAA-USD", ts, ts + 1000, price, Decimal(3), price + Decimal("0.01"), None
            )
        )
    for m in range(5):
        start = base + m * 60 * NS_PER_SECOND
        events.append(
            Candle(
                PROVIDER,
                "AAA-USD",
                "1m",
                start,
                Decimal(1),
                Decimal(3),
                Decimal("0.5"),
                Decimal(2),
                Decimal(10),
                4,
                source="backfill",
            )
        )
    events.append(Gap(PROVIDER, "AAA-USD", "trades", base, base + NS_PER_SECOND, "sequence"))
    return events


KINDS = ("trade", "quote", "candle", "gap")


def expected_counts(
    events: Iterable[Event], *, latest_only: Iterable[str] = (), kinds: Iterable[str] = KINDS
) -> dict[str, int]:
    """What a store should hold for ``events``, per kind, by the storage contract's keys.

    Trades count once per (symbol, trade id, ts), quotes once per (symbol, ts), candles once
    per (symbol, interval, start), gaps once per (symbol, kind, start). A kind named in
    ``latest_only`` keeps one entry per symbol (a cache of the newest value).
    """
    keys: dict[str, set[tuple[object, ...]]] = {kind: set() for kind in kinds}
    latest = set(latest_only)
    for e in events:
        kind = KIND[type(e)]
        if kind not in keys:
            continue
        if kind in latest:
            key: tuple[object, ...] = (e.provider, e.symbol)
        elif isinstance(e, Trade):
            key = (e.provider, e.symbol, e.trade_id, e.ts)
        elif isinstance(e, Candle):
            key = (e.provider, e.symbol, e.interval, e.start)
        elif isinstance(e, Gap):
            key = (e.provider, e.symbol, e.kind, e.start)
        else:
            key = (e.provider, e.symbol, event_time(e))
        keys[kind].add(key)
    return {kind: len(found) for kind, found in keys.items()}


async def check_sink(
    make_sink: Callable[[], Sink],
    count: Counter,
    *,
    retention_s: float | None = None,
    latest_only: Iterable[str] = (),
    drops_stale_on_write: bool = False,
    kinds: Iterable[str] = KINDS,
) -> None:
    """Assert the sink contract on a real store.

    Checks: a batch of every kind is stored; writing it again changes no count (idempotency);
    a later write of the same candle updates it rather than adding a row; a
    :class:`~tickwire.protocols.GapSink` reads back every gap state, a ``failed`` gap with its
    ``detail`` (kept when the gap is found ``open`` again, cleared once it is filled); with
    ``retention_s``, :meth:`enforce_retention` removes exactly the rows older than that by event
    time; and a :class:`RunningSink` flushes everything queued when it is closed.

    Caches whose semantics differ from a SQL table say so:

    :param make_sink: builds a fresh sink on the store under test (called more than once).
    :param count: counts what the store holds, per kind, for provider ``"conformance"``.
    :param retention_s: the retention the sink was configured with, to check pruning.
    :param latest_only: kinds the store keeps only the newest entry of, per symbol (a Redis
        hash of the latest quote: ``latest_only={"quote"}``); their count is then one per symbol.
    :param drops_stale_on_write: the sink does not write events already older than its
        retention (instead of, or as well as, pruning them later): stale trades written must
        not be counted at all, and the retention pass must leave the count where it is.
    :param kinds: the kinds the store keeps (and ``count`` can count); the others are written
        but not counted.
    """
    kinds = tuple(kinds)
    unknown = set(kinds) - set(KINDS) or set(latest_only) - set(kinds)
    assert not unknown, f"kinds must be among {KINDS} (latest_only among kinds): {unknown}"
    sink = make_sink()
    await sink.open()
    try:
        events = sample_events()
        want = expected_counts(events, latest_only=latest_only, kinds=kinds)
        await sink.write_batch(events)
        first = {kind: await count(kind) for kind in kinds}
        assert first == want, f"stored {first}, expected {want}"
        await sink.write_batch(events)
        again = {kind: await count(kind) for kind in kinds}
        assert again == first, f"a replayed batch changed the store: {first} -> {again}"

        if "candle" in kinds:
            candle = next(e for e in events if isinstance(e, Candle))
            await sink.write_batch([msgspec.structs.replace(candle, close=Decimal("2.5"))])
            assert await count("candle") == want["candle"], "a rewritten candle must update"

        if "gap" in kinds and isinstance(sink, GapSink):
            await _check_gap_states(sink, events)

        if retention_s is not None and "trade" in kinds:
            assert isinstance(sink, RetentionSink), "a sink with retention must prune"
            now = time.time_ns()
            old = now - int((retention_s + 86_400) * NS_PER_SECOND)
            stale = [
                Trade(
                    PROVIDER, "OLD-USD", old + i, old + i, Decimal(1), Decimal(1), None, f"old-{i}"
                )
                for i in range(10)
            ]
            await sink.write_batch(stale)
            trades = want["trade"]
            if drops_stale_on_write:
                assert await count("trade") == trades, "trades older than retention were stored"
            else:
                assert await count("trade") == trades + 10
            removed = await sink.enforce_retention(now)
            assert isinstance(removed, int), "enforce_retention must return how many rows went"
            assert await count("trade") == trades, "retention must remove exactly the old trades"
    finally:
        await sink.aclose()

    if "trade" not in kinds:
        return
    # Flush on shutdown: everything queued in the runner's buffer reaches the store.
    before = await count("trade")
    running = RunningSink(
        SinkSettings(type="conformance", batch_size=10_000, flush_interval=60),
        make_sink(),
        Metrics(),
    )
    later = [
        msgspec.structs.replace(e, trade_id=f"flush-{i}")
        for i, e in enumerate(
            e for e in sample_events() if isinstance(e, Trade) and e.trade_id is not None
        )
    ]
    assert running.offer(later)
    running.close()
    await running.run()
    assert running.written == len(later)
    assert await count("trade") == before + len(later), "closing must flush every queued event"


async def _check_gap_states(sink: Sink, events: Iterable[Event]) -> None:
    """Round trip every gap state of the sample's gap through a sink that lists its gaps."""
    assert isinstance(sink, GapSink)
    found = next(e for e in events if isinstance(e, Gap))

    async def stored() -> list[Gap]:
        return [
            g
            for g in await sink.gaps(PROVIDER, found.symbol)
            if g.kind == found.kind and g.start == found.start
        ]

    assert await stored() == [found], f"a stored open gap reads back as {await stored()}"
    failed = msgspec.structs.replace(found, status="failed", detail="HTTP 403: not on this plan")
    await sink.write_batch([failed])
    assert await stored() == [failed], "a failed gap must read back with its detail"
    await sink.write_batch([found])
    assert await stored() == [failed], "a failed gap found open again must keep its detail"
    for status in ("empty", "filled"):
        resolved = msgspec.structs.replace(found, status=status)
        await sink.write_batch([resolved])
        assert await stored() == [resolved], f"a {status} gap must read back without a detail"


__all__ = ("KINDS", "PROVIDER", "check_sink", "expected_counts", "sample_events")
