"""Writers: durable consumption into real sinks, acknowledged only after the commit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from nats.aio.msg import Msg
from nats.js.api import ConsumerInfo
from nats_helpers import (
    Bus,
    FeedPlugin,
    base_settings,
    feed_trade,
    sqlite_count,
    sqlite_trades,
    wait_until,
)

from tickwire.pipeline import Pipeline
from tickwire.protocols import ConnectionFailed
from tickwire.settings import ConfigError, Settings
from tickwire_nats import PROVIDER, NatsConnector, NatsSink, attach
from tickwire_nats.connect import CORE_ACKED, NEEDS_ATTACH
from tickwire_nats.writer import build, main

pytestmark = [pytest.mark.anyio, pytest.mark.service]

SYMBOLS = ["BTC-USD", "ETH/USDT", "CS.D.EURUSD.CFD.IP", "OANDA:EUR_USD"]


def collector(bus: Bus, tmp: Path, symbols: list[str], count: int) -> Pipeline:
    settings = Settings(
        sources=[{"provider": "feed", "symbols": symbols, "count": count, "pause": 0.01}],
        sinks=[{"type": "nats", **bus.keys(), "batch_size": 200, "flush_interval": "20ms"}],
        **base_settings(tmp),
    )
    return Pipeline(settings, plugins=[FeedPlugin()])


def writer(bus: Bus, tmp: Path, db: Path, **source: object) -> Pipeline:
    settings = Settings(
        sources=[{"provider": "nats", **bus.keys(), "ack_wait": "3s", **source}],
        sinks=[{"type": "sqlite", "path": str(db), "batch_size": 500, "flush_interval": "50ms"}],
        **base_settings(tmp),
    )
    pipeline = Pipeline(settings)
    attach(pipeline)
    return pipeline


async def consumer(bus: Bus, durable: str = "tickwire-writer") -> ConsumerInfo:
    return await bus.nc.jetstream().consumer_info(bus.stream, durable)


def expected(symbols: list[str], count: int) -> list[tuple[str, str, str, int]]:
    return sorted(
        (t.provider, t.symbol, str(t.trade_id), t.ts)
        for s in symbols
        for t in (feed_trade(s, i) for i in range(count))
    )


async def test_collectors_to_nats_to_writer_into_sqlite(bus: Bus, tmp_path: Path) -> None:
    """A redundant pair of collectors and a collector of another shard; one writer; SQLite
    holds every trade exactly once and the consumer ends with nothing unacknowledged."""
    count = 300
    shard_a, shard_b = SYMBOLS[:2], SYMBOLS[2:]
    db = tmp_path / "history.db"
    async with (
        collector(bus, tmp_path / "a1", shard_a, count) as a1,
        collector(bus, tmp_path / "a2", shard_a, count) as a2,
        collector(bus, tmp_path / "b", shard_b, count),
        writer(bus, tmp_path / "w", db),
    ):
        total = len(SYMBOLS) * count
        await wait_until(lambda: sqlite_count(db) >= total)

        async def settled() -> bool:
            info = await consumer(bus)
            return info.num_ack_pending == 0 and info.num_pending == 0

        await wait_until(settled)
        assert a1.running_sinks[0].written == a2.running_sinks[0].written == 2 * count
    assert sqlite_trades(db) == expected(SYMBOLS, count)
    # The pair's copies were dropped by the stream, not by the database.
    assert await bus.count() == len(SYMBOLS) * count


async def test_writer_crash_mid_batch_replays_everything(bus: Bus, tmp_path: Path) -> None:
    """A writer killed (SIGKILL) while its sink writes: nothing was acknowledged, so a new
    writer on the same durable consumer gets every message again and stores each once."""
    count = 250
    sink = NatsSink(bus.sink_settings())
    await sink.open()
    events = [feed_trade(s, i) for s in SYMBOLS for i in range(count)]
    await sink.write_batch(events)
    await sink.aclose()

    source = {"provider": "nats", **bus.keys(), "ack_wait": "2s"}
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("nats_writer_proc.py")), json.dumps(source)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with anyio.fail_after(30):
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert line.startswith("writing "), line
        info = await consumer(bus)
        assert info.num_ack_pending > 0  # delivered to the writer
        assert info.ack_floor.stream_seq == 0  # and none acknowledged
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    db = tmp_path / "history.db"
    async with writer(bus, tmp_path / "w2", db):
        await wait_until(lambda: sqlite_count(db) >= len(events))

        async def settled() -> bool:
            info = await consumer(bus)
            return info.num_ack_pending == 0 and info.num_pending == 0

        await wait_until(settled)
    assert sqlite_trades(db) == expected(SYMBOLS, count)


async def test_writer_restart_after_partial_commit_stays_exactly_once(
    bus: Bus, tmp_path: Path
) -> None:
    """A writer stopped part-way (some batches committed and acked, some not) and restarted."""
    count = 400
    sink = NatsSink(bus.sink_settings())
    await sink.open()
    events = [feed_trade(s, i) for s in SYMBOLS for i in range(count)]
    await sink.write_batch(events)
    await sink.aclose()
    db = tmp_path / "history.db"
    async with writer(bus, tmp_path / "w1", db, batch=100) as first:
        await wait_until(lambda: sqlite_count(db) > 0)
        first.stop()
    partial = sqlite_count(db)
    async with writer(bus, tmp_path / "w2", db):
        await wait_until(lambda: sqlite_count(db) >= len(events))

        async def settled() -> bool:
            info = await consumer(bus)
            return info.num_ack_pending == 0 and info.num_pending == 0

        await wait_until(settled)
    assert partial > 0
    assert sqlite_trades(db) == expected(SYMBOLS, count)


async def test_two_writers_share_one_durable_consumer(bus: Bus, tmp_path: Path) -> None:
    count = 500
    sink = NatsSink(bus.sink_settings())
    await sink.open()
    events = [feed_trade(s, i) for s in SYMBOLS for i in range(count)]
    await sink.write_batch(events)
    await sink.aclose()
    db1, db2 = tmp_path / "one.db", tmp_path / "two.db"
    async with (
        writer(bus, tmp_path / "w1", db1, batch=50),
        writer(bus, tmp_path / "w2", db2, batch=50),
    ):
        await wait_until(lambda: sqlite_count(db1) + sqlite_count(db2) >= len(events))
    both = sqlite_trades(db1) + sqlite_trades(db2)
    assert sorted(both) == expected(SYMBOLS, count)


async def test_unattached_writer_refuses_to_consume(bus: Bus, tmp_path: Path) -> None:
    """Without commit reports a writer would ack what it only queued: it does not start.
    (With core's Acked frames the runner reports commits, and it starts.)"""
    settings = Settings(
        sources=[{"provider": "nats", **bus.keys()}], sinks=[], **base_settings(tmp_path)
    )
    pipeline = Pipeline(settings)
    connector = pipeline.connections[0].connector
    assert isinstance(connector, NatsConnector)
    if CORE_ACKED is None:
        with pytest.raises(ConnectionFailed, match="acknowledges a message only after"):
            async with connector.open([">"]):
                pass
        assert "tickwire-nats-writer" in NEEDS_ATTACH
    else:
        async with connector.open([">"]) as conn:
            assert conn.acked == 0


async def test_attach_refuses_a_writer_that_builds_candles(bus: Bus, tmp_path: Path) -> None:
    settings = Settings(
        sources=[{"provider": "nats", **bus.keys()}],
        sinks=[],
        **{**base_settings(tmp_path), "candles": {"intervals": ["1m"]}},
    )
    with pytest.raises(ConfigError, match="intervals = \\[\\]"):
        attach(Pipeline(settings))


async def test_writer_command_builds_an_attached_writer(bus: Bus, tmp_path: Path) -> None:
    config = tmp_path / "writer.toml"
    db = tmp_path / "w.db"
    config.write_text(
        f"""
[[sources]]
provider = "nats"
url = "{bus.keys()["url"]}"
stream = "{bus.stream}"
subject_prefix = "{bus.prefix}"

[[sinks]]
type = "sqlite"
path = "{db}"

[runner]
deadletter = "{tmp_path / "dl"}"
""",
        encoding="utf-8",
    )
    pipeline = build(str(config))
    assert pipeline.builder is None  # candles default to none for writers
    connector = pipeline.connections[0].connector
    assert isinstance(connector, NatsConnector) and connector.tracker is not None
    sink = NatsSink(bus.sink_settings())
    await sink.open()
    await sink.write_batch([feed_trade("X-Y", i) for i in range(20)])
    await sink.aclose()
    async with pipeline:
        await wait_until(lambda: sqlite_count(db) == 20)


def test_writer_command_reports_a_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "writer.toml"
    config.write_text('[[sources]]\nprovider = "nats"\nbogus = 1\n', encoding="utf-8")
    assert main(["-c", str(config)]) == 2
    assert "bogus" in capsys.readouterr().err


async def test_idle_fetches_that_time_out_keep_the_connection(bus: Bus, tmp_path: Path) -> None:
    """An empty fetch is "no messages yet" whichever TimeoutError nats-py raises for it (2.16
    raises a bare asyncio.TimeoutError when the deadline runs out between its two pull
    requests, about one short fetch in seven): the connection yields keep-alive frames on."""
    settings = Settings(
        sources=[{"provider": "nats", **bus.keys(), "fetch_timeout": "5ms"}],
        sinks=[],
        **base_settings(tmp_path),
    )
    pipeline = Pipeline(settings)
    connector = pipeline.connections[0].connector
    assert isinstance(connector, NatsConnector)
    attach(pipeline)
    frames = 0
    async with connector.open([">"]) as conn:
        async for frame in conn:
            assert frame == b""
            frames += 1
            if frames == 300:
                break
    assert frames == 300


async def test_a_writer_joining_a_durable_consumer_asks_for_no_consumer_info(bus: Bus) -> None:
    """Joining an existing durable makes no CONSUMER.INFO and no CONSUMER.CREATE request.

    On nats-server 2.9.10 either request leaves a pull consumer with a backlog delivering a few
    hundred messages per second for good (bench/nats_bus.py: 235 events/s through a writer).
    nats-py's ``pull_subscribe`` asks CONSUMER.INFO, so every writer that joined (a second
    writer, a restart, a reconnect) slowed all writers. The requests are watched on the server
    (a core subscription to ``$JS.API.CONSUMER.>``), so any client code path that asks is seen.
    """
    seen: list[str] = []

    async def note(msg: Msg) -> None:
        if f".{bus.stream}" in msg.subject:
            seen.append(msg.subject)

    watch = await bus.nc.subscribe("$JS.API.CONSUMER.>", cb=note)
    await bus.nc.flush()
    sink = NatsSink(bus.sink_settings())
    await sink.open()
    try:
        await sink.write_batch([feed_trade("BTC-USD", i) for i in range(3)])
    finally:
        await sink.aclose()
    connector = NatsConnector(bus.source_settings(), PROVIDER)

    async def first_frame() -> None:
        async with connector.open([">"]) as conn:
            async for frame in conn:
                if frame:
                    return

    # The first writer creates the consumer (the watch sees that: it works).
    await first_frame()
    await bus.nc.flush()
    assert any(".CREATE." in s and ".tickwire-writer" in s for s in seen), seen
    before = len(seen)
    # A second writer (or this one reconnecting) joins the existing durable.
    await first_frame()
    await bus.nc.flush()
    joined = seen[before:]
    await watch.unsubscribe()
    assert not [s for s in joined if ".INFO." in s or ".CREATE." in s], joined
    assert f"$JS.API.CONSUMER.NAMES.{bus.stream}" in joined  # it looked, by name only
    assert (await consumer(bus)).delivered.stream_seq >= 1  # and it was delivered messages
