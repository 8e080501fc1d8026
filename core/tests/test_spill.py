"""Spill-to-disk: the write-ahead file and the running sink that overflows into it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from tickwire._runner.sink import RunningSink
from tickwire.events import Event, Gap, Trade
from tickwire.metrics import Metrics
from tickwire.settings import SinkSettings
from tickwire.spill import HEADER_SIZE, Spill, SpillInUse, spill_path
from tickwire.testing import MemorySink

pytestmark = pytest.mark.anyio


def trades(start: int, n: int, symbol: str = "AAA") -> list[Event]:
    return [
        Trade(
            "spill",
            symbol,
            1_700_000_000_000_000_000 + i,
            0,
            Decimal("1.50"),
            Decimal(1),
            "buy",
            str(i),
        )
        for i in range(start, start + n)
    ]


class GateSink(MemorySink):
    """A memory sink whose writes fail while ``down`` (a sink that is down)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True
        self.attempts = 0

    async def write_batch(self, events: Sequence[Event]) -> None:
        self.attempts += 1
        if self.down:
            raise ConnectionError("sink is down")
        await super().write_batch(events)


class Producer:
    """Offers ``total`` trades in chunks to a running sink; when one is refused it notes so
    (``blocked``) and waits for room (``put``)."""

    def __init__(self, rs: RunningSink, total: int, chunk: int) -> None:
        self.rs, self.total, self.chunk = rs, total, chunk
        self.sent = 0
        self.blocked = anyio.Event()

    async def run(self) -> None:
        while self.sent < self.total:
            batch = trades(self.sent, self.chunk)
            if not self.rs.offer(batch):
                self.blocked.set()
                await self.rs.put(batch)
            self.sent += self.chunk


def ids(events: Sequence[Event]) -> list[int]:
    return [int(e.trade_id) for e in events if isinstance(e, Trade) and e.trade_id]


# ---- the file ----------------------------------------------------------------------------


def test_append_read_commit_and_truncate(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "s.wal", 1 << 20, fsync_interval=0)
    assert spill.append(trades(0, 3))
    assert spill.append([Gap("spill", "AAA", "trades", 1, 2, "sequence")])
    assert spill.pending and spill.events == 4
    batch, pos = spill.read(3)
    assert ids(batch) == [0, 1, 2]
    assert spill.unread and spill.pending
    spill.commit(pos)
    assert spill.events == 1
    rest, pos = spill.read(100)
    assert rest == [Gap("spill", "AAA", "trades", 1, 2, "sequence")]
    spill.commit(pos)
    assert not spill.pending
    assert os.path.getsize(spill.path) == HEADER_SIZE
    spill.close()
    assert not spill.path.exists()


def test_a_file_left_behind_is_recovered_from_its_committed_offset(tmp_path: Path) -> None:
    path = tmp_path / "s.wal"
    spill = Spill(path, 1 << 20, fsync_interval=0)
    for i in range(4):
        spill.append(trades(i * 10, 10))
    _, pos = spill.read(10)
    spill.commit(pos)
    spill.close()  # 30 events pending: the file stays
    again = Spill(path, 1 << 20)
    assert again.recover() == 30
    got: list[Event] = []
    while again.unread:
        batch, pos = again.read(7)
        got += batch
        again.commit(pos)
    assert ids(got) == list(range(10, 40))
    assert again.torn_bytes == 0


@pytest.mark.parametrize("damage", ["torn", "bad_crc", "huge_length"])
def test_a_torn_or_corrupt_tail_is_dropped(tmp_path: Path, damage: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="tickwire")
    path = tmp_path / "s.wal"
    spill = Spill(path, 1 << 20, fsync_interval=0)
    spill.append(trades(0, 5))
    good = spill.size
    spill.append(trades(5, 5))
    spill.close()
    data = bytearray(path.read_bytes())
    if damage == "torn":
        data = data[: good + 9]  # cut inside the second record's header + payload
    elif damage == "bad_crc":
        data[-3] ^= 0xFF
    else:
        data[good : good + 4] = (2**31).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    again = Spill(path, 1 << 20)
    assert again.recover() == 5
    assert again.torn_bytes == len(data) - good
    assert os.path.getsize(path) == good
    batch, _ = again.read(100)
    assert ids(batch) == [0, 1, 2, 3, 4]
    assert "sink.spill_torn" in caplog.text


def test_a_bad_header_replays_the_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "s.wal"
    spill = Spill(path, 1 << 20, fsync_interval=0)
    spill.append(trades(0, 5))
    spill.append(trades(5, 5))
    _, pos = spill.read(5)
    spill.commit(pos)
    spill.close()
    data = bytearray(path.read_bytes())
    data[12] ^= 0xFF  # the committed offset no longer matches its CRC
    path.write_bytes(bytes(data))
    again = Spill(path, 1 << 20)
    assert again.recover() == 10  # replays from the start: sinks write idempotently


def test_the_bound_refuses_then_compaction_makes_room(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "s.wal", 4096, fsync_interval=0)
    appended = 0
    while spill.append(trades(appended, 5)):
        appended += 5
    assert appended > 0
    assert spill.size <= 4096
    batch, pos = spill.read(5)
    assert not spill.append(trades(1000, 5)), "no room while the first batch is in flight"
    spill.commit(pos)
    assert spill.append(trades(1000, 5)), "the replayed head is compacted away"
    got = list(batch)
    while spill.unread:
        b, pos = spill.read(50)
        got += b
        spill.commit(pos)
    assert ids(got) == [*range(appended), *range(1000, 1005)]


def test_prepend_puts_events_first(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "s.wal", 1 << 20, fsync_interval=0)
    spill.append(trades(10, 5))
    spill.prepend(trades(0, 10))
    spill.close()
    again = Spill(tmp_path / "s.wal", 1 << 20)
    assert again.recover() == 15
    batch, _ = again.read(100)
    assert ids(batch) == list(range(15))


def test_label_becomes_a_safe_file_name(tmp_path: Path) -> None:
    assert spill_path(tmp_path, "pg/main db") == tmp_path / "pg_main_db.wal"


# ---- the running sink --------------------------------------------------------------------


def running(
    sink: MemorySink,
    tmp_path: Path,
    *,
    buffer: int = 10,
    max_bytes: int = 1 << 20,
    metrics: Metrics | None = None,
) -> RunningSink:
    rs = RunningSink(
        SinkSettings(type="gate", buffer=buffer, batch_size=4, flush_interval=0.01),
        sink,
        metrics or Metrics(),
    )
    rs.spill_to(tmp_path / "spill", max_bytes=max_bytes, fsync_interval=0.05)
    return rs


async def test_overflow_spills_and_is_replayed_in_order_once_the_sink_writes(
    tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="tickwire")
    sink = GateSink()
    metrics = Metrics()
    rs = running(sink, tmp_path, metrics=metrics)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rs.run)
        sent = 0
        for _ in range(20):
            with anyio.fail_after(1):  # never blocks: the overflow goes to disk
                await rs.put(trades(sent, 3))
            sent += 3
        assert rs.spilled > 0
        assert metrics.value("sink_spilled_total", sink="gate") == rs.spilled
        assert metrics.value("sink_spill_bytes", sink="gate") > 0
        assert metrics.value("sink_backpressure_total") == 0
        sink.down = False
        await sink.wait_for(lambda m: len(m.events) == sent)
        # newer events after the replay still come after it
        await rs.put(trades(sent, 3))
        await sink.wait_for(lambda m: len(m.events) == sent + 3)
        rs.close()
    assert ids(sink.events) == list(range(sent + 3))
    assert rs.spill is not None and not rs.spill.pending
    assert not rs.spill.path.exists()
    assert metrics.value("sink_spill_bytes", sink="gate") == 0
    assert "sink.spill " in caplog.text and "sink.spill_replayed" in caplog.text


async def test_a_full_spill_file_applies_backpressure_and_says_so(tmp_path: Path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="tickwire")
    sink = GateSink()
    metrics = Metrics()
    rs = running(sink, tmp_path, max_bytes=2048, metrics=metrics)
    producer = Producer(rs, 400, 2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rs.run)
        tg.start_soon(producer.run)
        await producer.blocked.wait()
        assert metrics.value("sink_spill_full_total", sink="gate") == 1
        assert "sink.spill_full" in caplog.text
        assert producer.sent < 400
        sink.down = False
        await sink.wait_for(lambda m: len(m.events) == 400, timeout=20)
        rs.close()
    assert ids(sink.events) == list(range(400))


async def test_a_cut_short_run_keeps_memory_and_spill_for_the_next_start(tmp_path: Path) -> None:
    sink = GateSink()
    rs = running(sink, tmp_path)
    with anyio.move_on_after(1):
        async with anyio.create_task_group() as tg:
            tg.start_soon(rs.run)
            for i in range(10):
                await rs.put(trades(i * 3, 3))
            await anyio.sleep(0.3)
            rs.close()
            await anyio.sleep_forever()  # the shutdown deadline passes: cancelled
    assert rs.spill is not None and rs.spill.path.exists()
    fresh = MemorySink()
    again = running(fresh, tmp_path)
    assert again.spilled == 30
    async with anyio.create_task_group() as tg:
        tg.start_soon(again.run)
        await again.put(trades(30, 3))
        again.close()
    assert ids(fresh.events) == list(range(33))


async def test_a_sink_that_never_opens_keeps_its_events_on_disk(tmp_path: Path) -> None:
    class NeverOpens(MemorySink):
        async def open(self) -> None:
            raise ConnectionError("refused")

    rs = running(NeverOpens(), tmp_path)
    with anyio.move_on_after(0.5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(rs.run)
            for i in range(10):
                await rs.put(trades(i * 2, 2))
            await anyio.sleep_forever()
    fresh = MemorySink()
    again = running(fresh, tmp_path)
    async with anyio.create_task_group() as tg:
        tg.start_soon(again.run)
        again.close()
    assert ids(fresh.events) == list(range(20))


# ---- write-ahead ----------------------------------------------------------------------


def test_write_ahead_positions_stay_valid_while_the_written_head_is_cut_off(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.wal"
    spill = Spill(path, 1 << 20, fsync_interval=0, compact_bytes=2048)
    outstanding: list[tuple[int, int]] = []  # (position, first id) not yet committed
    largest = 0
    for chunk in range(200):
        pos = spill.append_ahead(trades(chunk * 5, 5))
        assert pos is not None
        assert not spill.unread  # a write-ahead chunk counts as read: memory has it
        outstanding.append((pos, chunk * 5))
        if len(outstanding) > 3:
            pos, _ = outstanding.pop(0)
            spill.commit(pos, 5)
        largest = max(largest, path.stat().st_size)
    # The head was cut off again and again: the file stays near compact_bytes, not 200 chunks.
    assert largest < 2 * 2048 + 1024, largest
    assert spill.events == 15
    # Another pipeline cannot take the file while this one holds it.
    with pytest.raises(SpillInUse, match="in use by another tickwire pipeline"):
        Spill(path, 1 << 20).recover()
    # A hard kill now (the process dies: its descriptor and lock go): the next run finds
    # exactly the chunks not committed, in order.
    assert spill._fd is not None
    os.close(spill._fd)
    again = Spill(path, 1 << 20)
    assert again.recover() == 15
    batch, _ = again.read(100)
    assert ids(batch) == list(range(outstanding[0][1], 1000))


def test_write_ahead_overflow_after_ahead_chunks_is_read_in_order(tmp_path: Path) -> None:
    spill = Spill(tmp_path / "s.wal", 1 << 20, fsync_interval=0)
    first = spill.append_ahead(trades(0, 3))
    assert first is not None and spill.append(trades(3, 4))
    assert spill.unread
    batch, pos = spill.read(100)  # only the overflow: the first chunk is in memory
    assert ids(batch) == [3, 4, 5, 6]
    spill.commit(first, 3)
    spill.commit(pos, 4)
    assert not spill.pending and spill.events == 0


async def test_write_ahead_steady_flow_keeps_the_file_small_and_delivers_in_order(
    tmp_path: Path,
) -> None:
    sink = MemorySink()
    rs = RunningSink(SinkSettings(type="mem", buffer=50, batch_size=20), sink, Metrics())
    rs.spill_to(tmp_path / "spill", max_bytes=1 << 16, fsync_interval=0.01)
    assert rs.write_ahead and rs.spill is not None
    largest = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(rs.run)
        for i in range(700):
            await rs.put(trades(i * 7, 7))
            largest = max(largest, rs.spill.size)
            if i % 5 == 0:
                await anyio.sleep(0)
        rs.close()
    assert ids(sink.events) == list(range(4900))
    # 4,900 events (~600 KiB of records) went through a 64 KiB file: its head was cut off.
    assert largest <= 1 << 16
    assert not rs.spill.path.exists()


async def test_the_running_sink_fsyncs_the_file_in_the_background(tmp_path: Path) -> None:
    sink = GateSink()  # down: everything stays in the file
    rs = RunningSink(SinkSettings(type="gate", buffer=100, batch_size=10), sink, Metrics())
    spill = rs.spill_to(tmp_path / "spill", fsync_interval=0.05)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rs.run)
        await rs.put(trades(0, 5))
        assert spill._dirty  # appended, not synced: appends never fsync on the loop
        with anyio.fail_after(5):
            while spill._dirty:
                await anyio.sleep(0.01)
        tg.cancel_scope.cancel()
    assert Spill(spill.path, 1 << 20).recover() == 5


class FailingDisk(Spill):
    """A spill file on a disk that fails while ``broken``."""

    broken = True

    def _append(self, events: Sequence[Event], payload: bytes | None) -> int | None:
        if self.broken:
            raise OSError(28, "No space left on device")
        return super()._append(events, payload)


async def test_write_ahead_on_a_failing_disk_keeps_events_in_memory_and_says_so(
    tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="tickwire")
    sink = MemorySink()
    metrics = Metrics()
    rs = RunningSink(SinkSettings(type="mem", buffer=100, batch_size=10), sink, metrics)
    rs.spill_to(tmp_path / "spill", fsync_interval=0)
    rs.spill = FailingDisk(spill_path(tmp_path / "spill", "mem"), 1 << 20, 0)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rs.run)
        for i in range(10):
            with anyio.fail_after(1):  # never blocks on the broken disk
                await rs.put(trades(i * 3, 3))
        await sink.wait_for(lambda m: len(m.events) == 30)
        FailingDisk.broken = False
        try:
            await rs.put(trades(30, 3))
            await sink.wait_for(lambda m: len(m.events) == 33)
        finally:
            FailingDisk.broken = True
        rs.close()
    assert ids(sink.events) == list(range(33))
    assert metrics.value("sink_wal_errors_total", sink="mem") == 10
    assert caplog.text.count("sink.spill_failed") == 1
    assert "No space left on device" in caplog.text


async def test_overflow_on_a_failing_disk_makes_the_sources_wait_and_loses_nothing(
    tmp_path: Path, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="tickwire")
    sink = GateSink()
    metrics = Metrics()
    rs = RunningSink(
        SinkSettings(type="gate", buffer=6, batch_size=3, spill_mode="overflow"), sink, metrics
    )
    rs.spill_to(tmp_path / "spill", fsync_interval=0)
    rs.spill = FailingDisk(spill_path(tmp_path / "spill", "gate"), 1 << 20, 0)
    producer = Producer(rs, 30, 3)
    async with anyio.create_task_group() as tg:
        tg.start_soon(rs.run)
        tg.start_soon(producer.run)
        with anyio.fail_after(5):
            await producer.blocked.wait()  # the sink is down, memory is full and the disk fails
        assert producer.sent < 30
        assert metrics.value("sink_wal_errors_total", sink="gate") >= 1
        sink.down = False
        await sink.wait_for(lambda m: len(m.events) == 30)
        rs.close()
    assert ids(sink.events) == list(range(30))
    assert caplog.text.count("sink.spill_failed") == 1
    assert "the sources wait" in caplog.text
    assert "sink.spill_full" not in caplog.text  # the file is not full: the disk failed


HARD_KILL = textwrap.dedent(
    """
    import os, signal, sys
    from decimal import Decimal
    import anyio
    from tickwire._runner.sink import RunningSink
    from tickwire.events import Trade
    from tickwire.metrics import Metrics
    from tickwire.settings import SinkSettings

    class Down:
        async def open(self): pass
        async def write_batch(self, events): raise ConnectionError("down")
        async def aclose(self): pass

    async def main():
        rs = RunningSink(SinkSettings(type="gate", buffer=10, batch_size=4), Down(), Metrics())
        rs.spill_to(sys.argv[1], fsync_interval=0, mode=sys.argv[2])
        async with anyio.create_task_group() as tg:
            tg.start_soon(rs.run)
            for i in range(50):
                await rs.put([Trade("spill", "AAA", 1_700_000_000_000_000_000 + i, 0,
                                    Decimal("1.50"), Decimal(1), "buy", str(i))])
            print(rs.queued, rs.spilled, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    anyio.run(main)
    """
)


@pytest.mark.parametrize("mode", ["write-ahead", "overflow"])
async def test_a_hard_kill_loses_nothing_written_ahead_and_only_memory_in_overflow_mode(
    tmp_path: Path, mode: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HARD_KILL, str(tmp_path / "spill"), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    in_memory, on_disk = map(int, proc.stdout.split())
    fresh = MemorySink()
    again = running(fresh, tmp_path)
    async with anyio.create_task_group() as tg:
        tg.start_soon(again.run)
        again.close()
    if mode == "write-ahead":
        # Every event was in the file before it waited in memory: all 50 survive, in order.
        assert in_memory > 0 and on_disk > 0
        assert ids(fresh.events) == list(range(50))
    else:
        # The first ``in_memory`` events were in RAM when the process died (the buffer, plus
        # the batch the writer was retrying); what overflowed to disk survives, in order.
        assert in_memory + on_disk == 50
        assert ids(fresh.events) == list(range(50 - on_disk, 50))
