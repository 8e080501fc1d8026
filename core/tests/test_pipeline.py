"""The runner end to end over a real websocket: the jsonfeed test provider and its fake."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from pathlib import Path

import anyio
import jsonfeed
import pytest
from jsonfeed import FakeFeed

from tickwire import Pipeline, Settings
from tickwire.events import Candle, Gap, Trade
from tickwire.testing import check_provider

pytestmark = pytest.mark.anyio


def source(feed: FakeFeed, **extra: object) -> dict[str, object]:
    return {"provider": "jsonfeed", "symbols": ["AAA", "BBB"], "ws_url": feed.ws_url, **extra}


async def test_trades_flow_into_the_sink_with_exact_values(feed, make_pipeline, memory_sink):
    pipeline = make_pipeline([source(feed)], plugins=[jsonfeed], entry_points=False)
    async with pipeline:
        await feed.wait_clients()
        await feed.trade("AAA", "101.50000000", "0.25", side="sell", ts=1_700_000_000_123_456_789)
        await feed.trade("BBB", "7", "3")
        await memory_sink.wait_for(lambda m: len(m.of("trade")) == 2)
    first = memory_sink.of("trade")[0]
    assert first == Trade(
        "jsonfeed",
        "AAA",
        1_700_000_000_123_456_789,
        first.received_ts,
        Decimal("101.50000000"),
        Decimal("0.25"),
        "sell",
        "100",
    )
    assert str(first.price) == "101.50000000"
    assert feed.subscribes == [["AAA", "BBB"]]
    assert memory_sink.closed


async def test_candles_close_on_time_without_a_following_trade(feed, make_pipeline, memory_sink):
    pipeline = make_pipeline(
        [source(feed)], intervals=["1s"], plugins=[jsonfeed], entry_points=False
    )
    pipeline.settings.candles.grace = __import__("datetime").timedelta(milliseconds=50)
    pipeline.builder.grace = 50_000_000  # type: ignore[union-attr]
    async with pipeline:
        await feed.wait_clients()
        import time

        now = time.time_ns()
        start = now - now % 1_000_000_000
        for p in ("10", "12", "9", "11"):
            await feed.trade("AAA", p, "2", ts=start + 1000)
        await memory_sink.wait_for(
            lambda m: any(isinstance(e, Candle) and e.closed for e in m.events), timeout=5
        )
    closed = [e for e in memory_sink.of("candle") if e.closed]
    assert len(closed) == 1
    c = closed[0]
    assert (c.start, c.open, c.high, c.low, c.close, c.volume, c.trades) == (
        start,
        Decimal(10),
        Decimal(12),
        Decimal(9),
        Decimal(11),
        Decimal(8),
        4,
    )
    assert c.source == "built" and c.interval == "1s"


async def test_reconnects_and_resubscribes_after_a_drop(feed, make_pipeline, memory_sink):
    pipeline = make_pipeline([source(feed)], plugins=[jsonfeed], entry_points=False)
    async with pipeline:
        await feed.wait_clients()
        await feed.trade("AAA", "1")
        await memory_sink.wait_for(lambda m: len(m.of("trade")) == 1)
        await feed.drop_connections()
        await feed.wait_clients()
        await feed.trade("AAA", "2")
        await memory_sink.wait_for(lambda m: len(m.of("trade")) == 2)
        assert pipeline.metrics.value("reconnects_total") == 1
    assert feed.subscribes == [["AAA", "BBB"], ["AAA", "BBB"]]
    assert feed.connections == 2


async def test_a_stalled_connection_is_reopened(feed, make_pipeline, memory_sink):
    pipeline = make_pipeline([source(feed)], plugins=[jsonfeed], entry_points=False)
    async with pipeline:
        await feed.wait_clients()
        with anyio.fail_after(jsonfeed.KEEPALIVE * 6):
            while feed.connections < 2:
                await anyio.sleep(0.05)  # the server sends nothing: a stall
        assert pipeline.metrics.value("stalls_total") >= 1
        assert pipeline.metrics.value("reconnects_total", reason="stall") >= 1


async def test_malformed_frames_are_counted_kept_aside_and_skipped(
    feed, make_pipeline, memory_sink, tmp_path, caplog
):
    caplog.set_level(logging.WARNING, logger="tickwire")
    pipeline = make_pipeline([source(feed)], plugins=[jsonfeed], entry_points=False)
    async with pipeline:
        await feed.wait_clients()
        await feed.send_raw("{not json at all")
        await feed.send_raw(json.dumps({"type": "trade", "s": "AAA"}))
        await feed.send_raw(
            json.dumps({"type": "trade", "s": "AAA", "p": "-1", "q": "1", "t": 1, "id": 1})
        )
        await feed.trade("AAA", "5")
        await memory_sink.wait_for(lambda m: len(m.of("trade")) == 1)
    assert pipeline.metrics.value("malformed_total", provider="jsonfeed") == 3
    lines = (tmp_path / "deadletter" / "jsonfeed.jsonl").read_text().splitlines()
    kept = [json.loads(line) for line in lines]
    assert next(k["frame"] for k in kept) == "{not json at all"
    assert "not positive" in kept[2]["reason"]
    assert sum("message.malformed" in r.getMessage() for r in caplog.records) == 3


async def test_trade_id_hole_becomes_a_gap(feed, make_pipeline, memory_sink):
    pipeline = make_pipeline([source(feed)], plugins=[jsonfeed], entry_points=False)
    async with pipeline:
        await feed.wait_clients()
        await feed.trade("AAA", "1", ts=1_000)
        await feed.trade("AAA", "1", ts=5_000, skip=3)
        await memory_sink.wait_for(lambda m: bool(m.of("gap")))
    (gap,) = memory_sink.of("gap")
    assert isinstance(gap, Gap)
    assert (gap.symbol, gap.kind, gap.start, gap.end, gap.reason) == (
        "AAA",
        "trades",
        1_000,
        5_000,
        "sequence",
    )


async def test_failing_sink_is_retried_and_loses_nothing(feed, make_pipeline, memory_sink):
    memory_sink.fail_next(3)
    pipeline = make_pipeline([source(feed)], plugins=[jsonfeed], entry_points=False)
    async with pipeline:
        await feed.wait_clients()
        for i in range(20):
            await feed.trade("AAA", str(i + 1))
        await memory_sink.wait_for(lambda m: len(m.of("trade")) == 20, timeout=15)
    assert [t.price for t in memory_sink.of("trade")] == [Decimal(i + 1) for i in range(20)]
    assert pipeline.metrics.value("sink_errors_total") == 3


async def test_embedding_taps_events_inside_the_apps_own_loop(feed, tmp_path):
    settings = Settings(
        sources=[source(feed)],
        sinks=[],
        bootstrap={"days": 0},
        runner={"deadletter": str(tmp_path)},
    )
    got: list[Trade] = []
    async with Pipeline(settings, plugins=[jsonfeed], entry_points=False) as pipeline:

        async def produce() -> None:
            await feed.wait_clients()
            for i in range(5):
                await feed.trade("BBB", f"{i}.5")

        async with anyio.create_task_group() as tg:
            tg.start_soon(produce)
            async for event in pipeline.events():
                if isinstance(event, Trade):
                    got.append(event)
                    if len(got) == 5:
                        break
    assert [t.price for t in got] == [Decimal(f"{i}.5") for i in range(5)]


async def test_symbols_are_split_over_connections(feed, make_pipeline, memory_sink):
    pipeline = make_pipeline(
        [source(feed, symbols=["A", "B", "C"], symbols_per_connection=2)],
        plugins=[jsonfeed],
        entry_points=False,
    )
    async with pipeline:
        await feed.wait_clients(2)
    assert sorted(map(tuple, feed.subscribes)) == [("A", "B"), ("C",)]


async def test_conformance_kit_passes_for_the_test_provider(feed, tmp_path):
    async with anyio.create_task_group() as tg:
        tg.start_soon(feed.market, ["AAA", "BBB"])
        report = await check_provider(
            source(feed), feed, plugins=[jsonfeed], entry_points=False, deadletter=tmp_path
        )
        tg.cancel_scope.cancel()
    assert report.reconnects >= 1 and report.malformed == 1
    assert report.symbols_seen == {"AAA", "BBB"}


async def test_unreachable_provider_retries_with_growing_backoff(make_pipeline, caplog):
    caplog.set_level(logging.INFO, logger="tickwire")
    pipeline = make_pipeline(
        [{"provider": "jsonfeed", "symbols": ["A"], "ws_url": "ws://127.0.0.1:1"}],
        plugins=[jsonfeed],
        entry_points=False,
    )
    async with pipeline:
        await anyio.sleep(1.5)
    failed = [r for r in caplog.records if r.getMessage().startswith("connection.failed")]
    retries = [r for r in caplog.records if r.getMessage().startswith("connection.retry")]
    assert failed and "reason=refused" in failed[0].getMessage()
    assert len(retries) >= 3
    assert pipeline.status()["connections"][0]["state"] in ("reconnecting", "stopped")


def test_deadletter_is_bounded(tmp_path: Path):
    from tickwire.deadletter import DeadLetter

    dl = DeadLetter(tmp_path, max_bytes=4096)
    for i in range(200):
        dl.keep("src", "p", "bad", "x" * 100 + str(i))
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert total <= 4096
    assert dl.count == 200
    assert (tmp_path / "src.jsonl").read_text().splitlines()[-1].endswith('199"}')


async def test_a_gap_from_the_normalizer_is_logged_and_counted_like_a_detected_one(
    feed, make_pipeline, memory_sink
):
    import jsonfeed as jf

    from tickwire.hookspecs import hookimpl

    def normalize(frame, received_ts):
        return [Gap("jsonfeed", "AAA", "trades", 1, 2, "disconnect")]

    class GapPlugin:
        @hookimpl(tryfirst=True)
        def tickwire_normalize(self, source, info):
            return normalize

    found: list[Gap] = []
    pipeline = make_pipeline([source(feed)], plugins=[jf, GapPlugin()], entry_points=False)
    async with pipeline:
        await feed.wait_clients()
        await feed.trade("AAA", "1")
        await memory_sink.wait_for(lambda m: bool(m.of("gap")))
        found.extend(memory_sink.of("gap"))  # type: ignore[arg-type]
    assert pipeline.metrics.value("gaps_total", reason="disconnect") == 1
    assert found[0].reason == "disconnect"


async def test_gaps_due_at_the_same_time_queue_in_order() -> None:
    from tickwire._runner.backfill import BackfillWorker
    from tickwire.metrics import Metrics

    fetched: list[Gap] = []

    class Recorder:
        async def fetch(self, gap):
            fetched.append(gap)
            return
            yield

    async def publish(events) -> None:
        return None

    worker = BackfillWorker("s", Recorder(), publish, Metrics())  # type: ignore[arg-type]
    gaps = [Gap("p", s, "trades", 1, 2, "disconnect") for s in ("B", "A", "C")]
    for gap in gaps:
        worker.submit_at(10, gap)
    assert worker.release_due(9) == 0 and worker.pending == 0
    assert worker.release_due(10) == 3 and worker.pending == 3
    await worker.drain()
    assert fetched == gaps
    assert fetched[1] is gaps[1]
    worker.close()


async def test_shards_split_the_symbols_stably_and_completely(feed, tmp_path) -> None:
    from tickwire.shard import shard_of

    symbols = [f"S{i}" for i in range(40)]
    settings = Settings(
        sources=[source(feed, symbols=symbols)],
        sinks=[],
        bootstrap={"days": 0},
        runner={"deadletter": str(tmp_path)},
    )
    owned = []
    for index in (1, 2, 3):
        pipeline = Pipeline(settings, plugins=[jsonfeed], entry_points=False, shard=(index, 3))
        mine = pipeline.sources[0].settings.symbols
        assert all(shard_of("jsonfeed", s, 3) == index for s in mine)
        owned += mine
    assert sorted(owned) == sorted(symbols)  # every symbol once, in exactly one shard
