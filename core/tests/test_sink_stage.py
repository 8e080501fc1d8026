"""The sink stage's batching: group commit by default, ``flush_interval`` to wait for more."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import anyio
import pytest

from tickwire._runner.sink import RunningSink
from tickwire.events import Event, Trade
from tickwire.metrics import Metrics
from tickwire.settings import SinkSettings

pytestmark = pytest.mark.anyio


def trades(start: int, n: int) -> list[Event]:
    return [
        Trade(
            "stage",
            "AAA",
            1_700_000_000_000_000_000 + i,
            0,
            Decimal("1.5"),
            Decimal(1),
            "buy",
            str(i),
        )
        for i in range(start, start + n)
    ]


def ids(events: Sequence[Event]) -> list[int]:
    return [int(e.trade_id) for e in events if isinstance(e, Trade) and e.trade_id]


class HeldSink:
    """Each write starts (``writes`` grows) and then waits until the test releases it."""

    def __init__(self) -> None:
        self.writes: list[list[int]] = []
        self.done = 0
        self._started = anyio.Event()
        self._gate = anyio.Event()

    async def open(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    async def write_batch(self, events: Sequence[Event]) -> None:
        self.writes.append(ids(events))
        self._started.set()
        await self._gate.wait()
        self._gate = anyio.Event()
        self.done += 1

    async def started(self, n: int) -> list[int]:
        """Wait until the ``n``-th write has started; its event ids."""
        with anyio.fail_after(10):
            while len(self.writes) < n:
                self._started = anyio.Event()
                await self._started.wait()
        return self.writes[n - 1]

    def release(self) -> None:
        """Let the write in flight return."""
        self._gate.set()


def stage(sink: HeldSink, **settings: object) -> RunningSink:
    return RunningSink(SinkSettings(type="held", **settings), sink, Metrics())  # type: ignore[arg-type]


async def test_by_default_a_batch_is_what_arrived_while_the_previous_write_was_in_flight() -> None:
    assert SinkSettings(type="x").flush_interval.total_seconds() == 0
    sink = HeldSink()
    rs = stage(sink, batch_size=4)
    acked: list[str] = []
    async with anyio.create_task_group() as tg:
        await tg.start(rs.run)
        await rs.put(trades(0, 1), lambda: acked.append("a"))
        # The sink was idle: the one event is written at once, without waiting for more.
        assert await sink.started(1) == [0]
        await rs.put(trades(1, 2), lambda: acked.append("b"))
        await rs.put(trades(3, 1), lambda: acked.append("c"))
        await rs.put(trades(4, 1), lambda: acked.append("d"))
        await rs.put(trades(5, 2), lambda: acked.append("e"))
        await anyio.wait_all_tasks_blocked()
        assert len(sink.writes) == 1 and acked == []  # nothing acked before its commit
        sink.release()
        # Everything that arrived meanwhile goes in the next write, up to batch_size.
        assert await sink.started(2) == [1, 2, 3, 4]
        assert acked == ["a"]
        sink.release()
        assert await sink.started(3) == [5, 6]
        assert acked == ["a", "b", "c", "d"]
        sink.release()
        rs.close()
    assert acked == ["a", "b", "c", "d", "e"]
    assert rs.written == 7 and rs.queued == 0


async def test_a_flush_interval_lets_a_partial_batch_wait_for_more() -> None:
    sink = HeldSink()
    rs = stage(sink, batch_size=4, flush_interval="1h")
    async with anyio.create_task_group() as tg:
        await tg.start(rs.run)
        await rs.put(trades(0, 1))
        await anyio.wait_all_tasks_blocked()
        assert sink.writes == []  # the partial batch waits for more
        await rs.put(trades(1, 3))
        assert await sink.started(1) == [0, 1, 2, 3]  # a full batch does not wait
        sink.release()
        await rs.put(trades(4, 1))
        await anyio.wait_all_tasks_blocked()
        assert len(sink.writes) == 1
        rs.close()  # closing writes what waits, at once
        assert await sink.started(2) == [4]
        sink.release()
    assert rs.written == 5


async def test_the_flush_interval_counts_from_the_oldest_queued_event() -> None:
    """Events that waited a whole flush interval behind a slow write are written when it
    returns, without waiting the interval again."""
    sink = HeldSink()
    rs = stage(sink, batch_size=100, flush_interval="50ms")
    async with anyio.create_task_group() as tg:
        await tg.start(rs.run)
        await rs.put(trades(0, 1))
        assert await sink.started(1) == [0]  # after waiting 50 ms for more
        await rs.put(trades(1, 1))
        await anyio.sleep(0.06)  # event 1 has now waited longer than the flush interval
        sink.release()
        await anyio.wait_all_tasks_blocked()
        assert sink.writes == [[0], [1]]
        sink.release()
        rs.close()
    assert rs.written == 2
