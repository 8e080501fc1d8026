"""Sink-side faults: a sink down or slow stops neither the others nor loses an event; shutdown
flushes within its deadline (SIGTERM to the real CLI), and what a cut-short shutdown could not
write waits in the spill file for the next run."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))
from conftest import clean_env, tickwire_cmd
from harness import (
    FaultFeed,
    assert_exact,
    feed_source,
    pipeline,
    sqlite_sink,
    stored,
    until,
)

from tickwire import Pipeline
from tickwire.events import Event
from tickwire_coinbase.testing import FakeCoinbase
from tickwire_sqlite import SqliteSettings, SqliteSink

pytestmark = pytest.mark.anyio


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="tickwire")
    return caplog


@contextmanager
def locked(db: Path) -> Iterator[sqlite3.Connection]:
    """Hold SQLite's write lock on ``db`` (another process's long transaction): writes fail."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def test_a_down_sink_spills_while_the_other_keeps_up_then_catches_up_exactly(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    db_a, db_b = tmp_path / "a.db", tmp_path / "b.db"
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(
            tmp_path,
            [feed_source(feed, ["AAA", "BBB"])],
            [
                sqlite_sink(db_a, name="a"),
                sqlite_sink(db_b, name="b", busy_timeout="20ms", buffer=20, batch_size=10),
            ],
        )
        b = p.running_sinks[1]
        b.spill_to(tmp_path / "spill", fsync_interval=0.05)
        async with p:
            await feed.wait_clients()
            await until(lambda: b.writable)
            with locked(db_b):
                for _ in range(100):
                    await feed.trade("AAA")
                    await feed.trade("BBB")
                await until(lambda: len(stored(db_a)) == 200, what="sink a keeps up")
                assert len(stored(db_b)) == 0
                assert b.spilled > 0
                assert p.metrics.value("sink_spilled_total", sink="b") == b.spilled
                assert p.metrics.value("sink_backpressure_total") == 0
                await until(lambda: not b.writable, what="sink b reported down")
                assert (tmp_path / "spill" / "b.wal").exists()
            await until(lambda: len(stored(db_b)) == 200, what="sink b catches up")
            assert b.spill is not None
            await until(lambda: not b.spill.pending, what="the spill file replayed")
    assert_exact(db_a, feed)
    assert_exact(db_b, feed)
    assert "sink.retry" in logs.text and "sink.spill " in logs.text
    assert "sink.spill_replayed" in logs.text and "sink.restored" in logs.text


async def test_by_default_a_down_sink_does_not_stop_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default spill folder is relative: keep it here
    db_a, db_b = tmp_path / "a.db", tmp_path / "b.db"
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(
            tmp_path,
            [feed_source(feed, ["AAA"])],
            [
                sqlite_sink(db_a, name="a"),
                sqlite_sink(db_b, name="b", busy_timeout="20ms", buffer=20, batch_size=10),
            ],
        )
        b = p.running_sinks[1]
        async with p:
            await feed.wait_clients()
            await until(lambda: b.writable)
            with locked(db_b):
                for _ in range(200):
                    await feed.trade("AAA")
                await until(lambda: len(stored(db_a)) == 200, timeout=5)


class SlowSqlite(SqliteSink):
    """The real SQLite sink, slowed down: each batch takes 0.3 s more."""

    async def write_batch(self, events: Sequence[Event]) -> None:
        await anyio.sleep(0.3)
        await super().write_batch(events)


async def test_a_slow_sink_does_not_slow_the_others(tmp_path: Path) -> None:
    db_a, db_slow = tmp_path / "a.db", tmp_path / "slow.db"
    feed = FaultFeed()
    async with feed.running():
        slow = SlowSqlite(SqliteSettings(path=db_slow, retention=None))
        p = pipeline(
            tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db_a)], extra_sinks=(slow,)
        )
        slow_rs = p.running_sinks[1]
        slow_rs.batch_size = 10
        slow_rs.capacity = 30
        slow_rs.spill_to(tmp_path / "spill", fsync_interval=0.05)
        async with p:
            await feed.wait_clients()
            for _ in range(200):
                await feed.trade("AAA")
            await until(lambda: len(stored(db_a)) == 200)
            assert slow_rs.written < 200
            await until(lambda: len(stored(db_slow)) == 200, timeout=30)
    assert_exact(db_a, feed)
    assert_exact(db_slow, feed)


async def test_a_shutdown_cut_short_keeps_the_unwritten_events_for_the_next_run(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    db_a, db_b = tmp_path / "a.db", tmp_path / "b.db"
    spill = tmp_path / "spill"
    feed = FaultFeed()

    def build() -> Pipeline:
        p = pipeline(
            tmp_path,
            [feed_source(feed, ["AAA"])],
            [
                sqlite_sink(db_a, name="a"),
                sqlite_sink(db_b, name="b", busy_timeout="20ms", buffer=20, batch_size=10),
            ],
            runner={"shutdown_deadline": "1s"},
        )
        p.running_sinks[1].spill_to(spill, fsync_interval=0.05)
        return p

    async with feed.running():
        first = build()
        with ExitStack() as stack:
            async with first:
                await feed.wait_clients()
                await until(lambda: first.running_sinks[1].writable)
                stack.enter_context(locked(db_b))
                for _ in range(50):
                    await feed.trade("AAA")
                await until(lambda: len(stored(db_a)) == 50)
            # the pipeline stopped while b was still locked: its deadline passed
            assert len(stored(db_b)) == 0
        assert "sink.spill_saved" in logs.text
        second = build()
        assert second.running_sinks[1].spilled == 50
        async with second:
            await until(lambda: len(stored(db_b)) == 50, what="the next run replays the spill")
    assert_exact(db_a, feed)
    assert_exact(db_b, feed)
    assert "sink.spill_recovered" in logs.text
    assert not (spill / "b.wal").exists()


def _cli_config(
    tmp_path: Path, fake: FakeCoinbase, db: Path, spill_mode: str = "write-ahead"
) -> Path:
    path = tmp_path / "tickwire.toml"
    path.write_text(f"""
[[sources]]
provider = "coinbase"
symbols  = ["BTC-USD", "ETH-USD"]
channels = ["trades"]
ws_url   = "{fake.ws_url}"
rest_url = "{fake.rest_url}"

[candles]
intervals = []

[bootstrap]
days = 0

[[sinks]]
type = "sqlite"
path = "{db}"
retention = "36500d"
batch_size = 1000000
flush_interval = "1h"
spill_mode = "{spill_mode}"

[runner]
shutdown_deadline = "5s"
deadletter = "{tmp_path / "deadletter"}"
""")
    return path


def _start_run(tmp_path: Path, config: Path, log_name: str, *extra: str) -> subprocess.Popen[bytes]:
    """``tickwire run -c config`` in ``tmp_path``, JSON logs into ``tmp_path / log_name``."""
    with (tmp_path / log_name).open("wb") as log:
        return subprocess.Popen(
            tickwire_cmd("--log-format", "json", "run", "-c", str(config), *extra),
            cwd=tmp_path,
            env=clean_env(),
            stdout=log,
            stderr=log,
        )


async def test_sigterm_flushes_everything_buffered_within_the_deadline(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    async with FakeCoinbase(["BTC-USD", "ETH-USD"], seed=11) as fake:
        proc = _start_run(tmp_path, _cli_config(tmp_path, fake, db), "stderr.log")
        try:
            await fake.wait_subscribed(timeout=30)
            sent = []
            for i in range(30):
                sent.append(
                    await fake.trade("BTC-USD" if i % 2 else "ETH-USD", f"{100 + i}.5", "0.25")
                )
            await anyio.sleep(1.0)  # the buffer holds them: batch_size and flush_interval are huge
            assert stored(db, "coinbase") == [], "nothing should be written before SIGTERM"
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            rc = await anyio.to_thread.run_sync(lambda: proc.wait(timeout=30))
            took = time.monotonic() - started
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        truth = {p: fake.trades(p) for p in ("BTC-USD", "ETH-USD")}
    out = (tmp_path / "stderr.log").read_text()
    assert rc == 0, out
    assert took < 5 + 5, f"shutdown took {took:.1f} s (deadline 5 s)"
    rows = stored(db, "coinbase")
    want_ids = {(t.trade_id) for t in sent}
    got = {int(r[1]) for r in rows}
    assert want_ids <= got
    # Besides the published trades, only each product's last_match (sent on subscribe) is stored.
    extra = got - want_ids
    assert extra == {max(t.trade_id for t in truth[p] if t not in sent) for p in truth}, extra
    by_id = {t.trade_id: (p, t) for p, ts in truth.items() for t in ts}
    assert sorted(rows, key=lambda r: int(r[1])) == sorted(
        [
            (p, str(t.trade_id), t.ts, str(t.price), str(t.size), t.side)
            for p, t in (by_id[i] for i in got)
        ],
        key=lambda r: int(r[1]),
    )
    assert len(rows) == len({r[1] for r in rows})
    assert '"pipeline.stop"' in out and "sink.dropped" not in out


@pytest.mark.parametrize("spill_mode", ["write-ahead", "overflow"])
async def test_sigkill_loses_nothing_written_ahead_and_the_memory_buffer_in_overflow_mode(
    tmp_path: Path, spill_mode: str
) -> None:
    """``tickwire run`` is SIGKILLed while 30 trades wait in its sink's memory buffer (a huge
    batch size and flush interval hold them). The next run replays the write-ahead file:
    every trade is stored once. In ``overflow`` mode the buffer is lost (the documented cost
    of that mode): the same test shows what write-ahead saves."""
    db = tmp_path / "out.db"
    async with FakeCoinbase(["BTC-USD", "ETH-USD"], seed=12) as fake:
        config = _cli_config(tmp_path, fake, db, spill_mode)
        proc = _start_run(tmp_path, config, "first.log")
        try:
            await fake.wait_subscribed(timeout=30)
            sent = []
            for i in range(30):
                sent.append(
                    await fake.trade("BTC-USD" if i % 2 else "ETH-USD", f"{200 + i}.5", "0.5")
                )
            await anyio.sleep(1.0)  # received and buffered: nothing is written before a flush
            assert stored(db, "coinbase") == []
            proc.kill()
            assert await anyio.to_thread.run_sync(lambda: proc.wait(timeout=30)) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        # The next run replays what the killed one accepted; it stops by itself after 3 s.
        again = _start_run(tmp_path, config, "second.log", "--duration", "3")
        try:
            rc = await anyio.to_thread.run_sync(lambda: again.wait(timeout=60))
        finally:
            if again.poll() is None:
                again.kill()
                again.wait()
    second = (tmp_path / "second.log").read_text()
    assert rc == 0, second
    rows = stored(db, "coinbase")
    got = [int(r[1]) for r in rows]
    assert len(got) == len(set(got)), "a trade was stored twice"
    want = {t.trade_id for t in sent}
    if spill_mode == "write-ahead":
        assert want <= set(got), sorted(want - set(got))
        assert '"sink.spill_recovered"' in second
        assert sorted((int(r[1]), r[2], r[3], r[4], r[5]) for r in rows if int(r[1]) in want) == [
            (t.trade_id, t.ts, str(t.price), str(t.size), t.side)
            for t in sorted(sent, key=lambda t: t.trade_id)
        ]
    else:
        # Only each product's newest trade comes back, as the next run's last_match.
        newest = {max(t.trade_id for t in sent[i::2]) for i in (0, 1)}
        assert want & set(got) <= newest, "overflow mode kept trades that only memory held"
        assert len(want - set(got)) >= len(want) - 2
        assert '"sink.spill_recovered"' not in second
