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
from tickwire.spill import HEADER_SIZE, Spill, spill_path
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
    blocked = anyio.Event()
    sent = 0
    async with anyio.create_task_group() as tg:
        tg.start_soon(rs.run)

        async def produce() -> None:
            nonlocal sent
            while sent < 400:
                if not rs.offer(trades(sent, 2)):
                    blocked.set()
                    await rs.put(trades(sent, 2))
                sent += 2

        tg.start_soon(produce)
        await blocked.wait()
        assert metrics.value("sink_spill_full_total", sink="gate") == 1
        assert "sink.spill_full" in caplog.text
        assert sent < 400
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
        rs.spill_to(sys.argv[1], fsync_interval=0)
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


async def test_a_hard_kill_loses_only_the_memory_buffer_never_the_fsynced_spill(
    tmp_path: Path,
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", HARD_KILL, str(tmp_path / "spill")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    in_memory, on_disk = map(int, proc.stdout.split())
    assert in_memory + on_disk == 50
    fresh = MemorySink()
    again = running(fresh, tmp_path)
    assert again.spilled == on_disk
    async with anyio.create_task_group() as tg:
        tg.start_soon(again.run)
        again.close()
    # The first ``in_memory`` events were in RAM when the process died (the buffer, plus the
    # batch the writer was retrying); everything that overflowed to disk survives, in order.
    assert ids(fresh.events) == list(range(50 - on_disk, 50))
