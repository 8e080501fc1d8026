"""Contract checks for provider plugins, run against the plugin's own fake server."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import anyio

from tickwire.events import (
    EVENT_TYPES,
    BookDelta,
    BookSnapshot,
    Candle,
    Event,
    Gap,
    Quote,
    Trade,
)
from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire.testing.memory import MemorySink

#: Provider event times must lie within this many seconds of the local clock.
CLOCK_TOLERANCE_S = 86_400


@runtime_checkable
class FakeServer(Protocol):
    """What the kit needs from a provider's fake server.

    The server must keep data flowing for every subscribed symbol (a simulated market) while the
    check runs.
    """

    async def drop_connections(self) -> None:
        """Close every client connection abruptly (the client must reconnect)."""

    async def send_raw(self, frame: str) -> None:
        """Send ``frame`` as-is to every connected client (used for malformed input)."""


@dataclass
class ProviderReport:
    """What :func:`check_provider` saw, for further assertions by the caller."""

    events: list[Event] = field(default_factory=list)
    symbols_seen: set[str] = field(default_factory=set)
    reconnects: float = 0
    malformed: float = 0


def _check_event(event: Event, provider: str, symbols: set[str]) -> None:
    assert type(event) in EVENT_TYPES, f"not a tickwire event: {event!r}"
    assert event.provider == provider, f"provider {event.provider!r} != {provider!r}"
    assert event.symbol in symbols, f"symbol {event.symbol!r} was not subscribed"
    now = time.time_ns()
    if isinstance(event, Trade | Quote | BookSnapshot | BookDelta):
        assert isinstance(event.ts, int) and isinstance(event.received_ts, int)
        assert abs(event.ts - now) < CLOCK_TOLERANCE_S * 1e9, f"implausible ts in {event!r}"
    if isinstance(event, Trade):
        assert isinstance(event.price, Decimal) and isinstance(event.size, Decimal)
        assert event.price > 0 and event.size >= 0, f"absurd trade {event!r}"
        assert event.side in (None, "buy", "sell")
        assert event.trade_id is None or isinstance(event.trade_id, str)
    if isinstance(event, Quote):
        for value in (event.bid, event.ask, event.bid_size, event.ask_size):
            assert value is None or isinstance(value, Decimal)
    if isinstance(event, Candle):
        assert event.low <= min(event.open, event.close) <= max(event.open, event.close)
        assert max(event.open, event.close) <= event.high


def _counted(event: Event) -> bool:
    return not isinstance(event, Gap) and not (
        isinstance(event, Candle) and event.source == "built"
    )


def _count_backfill(pipeline: Pipeline) -> list[int]:
    """Count the events each source's backfill hands on (gaps the runner fills while the check
    runs, e.g. after the forced disconnect), so they are expected at the sink too."""
    count = [0]
    for worker in pipeline.backfillers.values():
        inner = worker.publish

        async def publish(
            events: Sequence[Event],
            inner: Callable[[Sequence[Event]], Awaitable[None]] = inner,
        ) -> None:
            count[0] += sum(1 for e in events if _counted(e))
            await inner(events)

        worker.publish = publish
    return count


async def check_provider(
    source: Mapping[str, Any],
    server: FakeServer,
    *,
    plugins: Iterable[object] = (),
    entry_points: bool = True,
    timeout: float = 20.0,
    deadletter: Path | None = None,
) -> ProviderReport:
    """Run a real pipeline for ``source`` against ``server`` and assert the provider contract.

    Checks, in order: every subscribed symbol yields valid events (types, Decimal prices,
    plausible times, the source's provider and symbols); a malformed frame is counted and
    skipped while data keeps flowing; after the server drops every connection the runner
    reconnects and resubscribes, and every symbol flows again; at shutdown the sink has
    received every event the pipeline produced (streamed, plus whatever the provider's backfill
    fetched for gaps found meanwhile).

    :param source: one ``[[sources]]`` table pointing at the fake server.
    :param server: the running fake (see :class:`FakeServer`).
    :param plugins: plugin objects to register beside (or, with ``entry_points=False``,
        instead of) the installed ones.
    """
    symbols = set(source["symbols"])
    provider = str(source["provider"])
    settings = Settings(
        sources=[dict(source)],
        sinks=[],
        candles={"intervals": ["1m"]},
        bootstrap={"days": 0},
        runner={
            "backoff_initial": "50ms",
            "backoff_max": "1s",
            "deadletter": str(deadletter or Path("deadletter")),
        },
    )
    memory = MemorySink()
    pipeline = Pipeline(settings, plugins=plugins, entry_points=entry_points, sinks=[memory])
    report = ProviderReport()
    backfilled = _count_backfill(pipeline)

    def seen_all(since: int) -> bool:
        got = {e.symbol for e in memory.events[since:] if not isinstance(e, Candle)}
        return symbols <= got

    async with pipeline:
        with anyio.fail_after(timeout):
            await memory.wait_for(lambda m: seen_all(0), timeout)
            report.symbols_seen = {e.symbol for e in memory.events}

            await server.send_raw("{this is not json")
            while pipeline.metrics.value("malformed_total", provider=provider) < 1:
                await anyio.sleep(0.02)
            mark = len(memory.events)
            await memory.wait_for(lambda m: len(m.events) > mark, timeout)

            reconnects = pipeline.metrics.value("reconnects_total")
            await server.drop_connections()
            while pipeline.metrics.value("reconnects_total") <= reconnects:
                await anyio.sleep(0.02)
            mark = len(memory.events)
            await memory.wait_for(lambda m: seen_all(mark), timeout)
        report.reconnects = pipeline.metrics.value("reconnects_total")
        report.malformed = pipeline.metrics.value("malformed_total", provider=provider)
    produced = sum(
        pipeline.metrics.value("events_total", provider=provider, kind=kind)
        for kind in ("trade", "quote", "candle", "book_snapshot", "book_delta")
    )
    delivered = [e for e in memory.events if e.provider == provider and _counted(e)]
    expected = produced + backfilled[0]
    assert len(delivered) == expected, (
        f"the sink received {len(delivered)} events but the pipeline produced {expected} "
        f"({produced:.0f} streamed, {backfilled[0]} backfilled)"
    )
    for event in memory.events:
        _check_event(event, provider, symbols)
    assert report.malformed >= 1
    report.events = list(memory.events)
    return report


__all__ = ("CLOCK_TOLERANCE_S", "FakeServer", "ProviderReport", "check_provider")
