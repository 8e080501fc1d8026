"""The commit watermark over real running sinks (core's RunningSink, spill file included)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest
from nats_helpers import feed_trade, wait_until

from tickwire._runner.sink import RunningSink
from tickwire.events import Event
from tickwire.metrics import Metrics
from tickwire.settings import SinkSettings
from tickwire.spill import Spill, spill_path
from tickwire_nats import CommitTracker

pytestmark = pytest.mark.anyio


class GatedSink:
    """Writes a batch only when the test opens the gate for it."""

    def __init__(self) -> None:
        self.rows: list[Event] = []
        self.gate = anyio.Event()

    async def open(self) -> None:
        pass

    async def write_batch(self, events: Sequence[Event]) -> None:
        await self.gate.wait()
        self.gate = anyio.Event()
        self.rows.extend(events)

    async def aclose(self) -> None:
        pass


def running(sink: GatedSink, batch_size: int = 10) -> RunningSink:
    settings = SinkSettings(type="gated", batch_size=batch_size, flush_interval="10ms")
    return RunningSink(settings, sink, Metrics())  # type: ignore[arg-type]


async def test_mark_is_committed_only_once_every_sink_wrote_up_to_it() -> None:
    one, two = GatedSink(), GatedSink()
    rs1, rs2 = running(one), running(two)
    tracker = CommitTracker([rs1, rs2])
    first = [feed_trade("A", i) for i in range(10)]
    second = [feed_trade("A", i) for i in range(10, 20)]
    for rs in (rs1, rs2):
        assert rs.offer(first)
    mark_first = tracker.mark()
    for rs in (rs1, rs2):
        assert rs.offer(second)
    mark_second = tracker.mark()
    assert mark_first == (10, 10) and mark_second == (20, 20)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rs1.run)
        tg.start_soon(rs2.run)
        one.gate.set()  # sink one writes the first batch; sink two has written nothing
        await wait_until(lambda: rs1.written == 10)
        assert not tracker.committed(mark_first)
        two.gate.set()
        await wait_until(lambda: rs2.written == 10)
        assert tracker.committed(mark_first)
        assert not tracker.committed(mark_second)
        one.gate.set()
        two.gate.set()
        await wait_until(lambda: tracker.committed(mark_second))
        rs1.close()
        rs2.close()
    assert one.rows == two.rows == first + second


async def test_events_recovered_from_a_spill_file_count_first(tmp_path: Path) -> None:
    """A sink replays what a previous run spilled before anything new: a mark taken now must
    wait for those too, or a message would be acked before its events were written."""
    old = [feed_trade("OLD", i) for i in range(30)]
    sink = GatedSink()
    rs = running(sink, batch_size=30)
    spill = Spill(spill_path(tmp_path, rs.label), 1 << 20, 0)
    spill.recover()
    assert spill.append(old)
    spill.close()
    rs.spill_to(tmp_path)
    tracker = CommitTracker([rs])
    new = [feed_trade("NEW", i) for i in range(5)]
    assert rs.offer(new)
    mark = tracker.mark()
    assert mark == (35,)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rs.run)
        sink.gate.set()  # the first batch written is the recovered one
        await wait_until(lambda: rs.written >= 30)
        assert not tracker.committed(mark)
        sink.gate.set()
        await wait_until(lambda: tracker.committed(mark))
        rs.close()
    assert sink.rows[:30] == old and sink.rows[30:] == new


def test_tracker_refuses_a_started_sink() -> None:
    rs = running(GatedSink())
    rs.offer([feed_trade("A", 0)])
    with pytest.raises(RuntimeError, match="before the pipeline starts"):
        CommitTracker([rs])
