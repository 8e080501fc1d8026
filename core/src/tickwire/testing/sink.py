"""Contract checks for sink plugins, run against the plugin's own real store."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from decimal import Decimal

import msgspec

from tickwire._runner.sink import RunningSink
from tickwire.events import NS_PER_SECOND, Candle, Event, Gap, Quote, Trade
from tickwire.metrics import Metrics
from tickwire.protocols import RetentionSink, Sink
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


async def check_sink(
    make_sink: Callable[[], Sink],
    count: Counter,
    *,
    retention_s: float | None = None,
) -> None:
    """Assert the sink contract on a real store.

    Checks: a batch of every kind is stored; writing it again changes no count (idempotency);
    a later write of the same candle updates it rather than adding a row; with
    ``retention_s``, :meth:`enforce_retention` removes exactly the rows older than that by event
    time; and a :class:`RunningSink` flushes everything queued when it is closed.

    :param make_sink: builds a fresh sink on the store under test (called more than once).
    :param count: counts what the store holds, per kind, for provider ``"conformance"``.
    :param retention_s: the retention the sink was configured with, to check pruning.
    """
    sink = make_sink()
    await sink.open()
    try:
        events = sample_events()
        await sink.write_batch(events)
        first = {kind: await count(kind) for kind in ("trade", "quote", "candle", "gap")}
        assert first == {"trade": 100, "quote": 50, "candle": 5, "gap": 1}, first
        await sink.write_batch(events)
        again = {kind: await count(kind) for kind in ("trade", "quote", "candle", "gap")}
        assert again == first, f"a replayed batch changed the store: {first} -> {again}"

        candle = next(e for e in events if isinstance(e, Candle))
        await sink.write_batch([msgspec.structs.replace(candle, close=Decimal("2.5"))])
        assert await count("candle") == 5, "a rewritten candle must update, not add"

        if retention_s is not None:
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
            assert await count("trade") == 110
            await sink.enforce_retention(now)
            assert await count("trade") == 100, "retention must remove exactly the old trades"
    finally:
        await sink.aclose()

    # Flush on shutdown: everything queued in the runner's buffer reaches the store.
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
    assert await count("trade") == 100 + len(later)


__all__ = ("PROVIDER", "check_sink", "sample_events")
