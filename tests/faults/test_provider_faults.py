"""Provider-side faults through the fault-controlled fake feed, into real SQLite.

Every test ends by comparing the store with exactly what the fake delivered: nothing lost,
nothing duplicated; where the fault lost data on the provider side, a Gap covers it.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import time
from pathlib import Path

import anyio
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from harness import (
    FaultFeed,
    assert_exact,
    feed_source,
    free_port,
    gaps,
    pipeline,
    sqlite_sink,
    stored,
    until,
)

from tickwire._runner.connect import Backoff

pytestmark = pytest.mark.anyio
S = 1_000_000_000


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "faults.db"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="tickwire")
    return caplog


async def trades(feed: FaultFeed, n: int, symbols: tuple[str, ...] = ("AAA",)) -> None:
    for _ in range(n):
        for s in symbols:
            await feed.trade(s)


def covered(gap_rows: list[tuple[str, str, int, int, str, str]], symbol: str, ts: int) -> bool:
    return any(g[0] == symbol and g[1] == "trades" and g[2] <= ts <= g[3] for g in gap_rows)


async def test_connection_refused_is_retried_until_the_server_is_up(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    feed = FaultFeed(port=free_port())
    p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
    async with p:
        await until(lambda: p.metrics.value("reconnects_total", reason="refused") >= 2)
        assert p.status()["connections"][0]["state"] == "reconnecting"
        async with feed.running():
            await feed.wait_clients()
            await trades(feed, 20)
            await until(lambda: len(stored(db)) == 20)
    assert_exact(db, feed)
    assert "connection.failed" in logs.text and "reason=refused" in logs.text
    assert "connection.restored" in logs.text


async def test_handshakes_refused_with_http_503_are_retried(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    feed = FaultFeed()
    feed.refuse_next = 3
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            await trades(feed, 10)
            await until(lambda: len(stored(db)) == 10)
            assert p.metrics.value("reconnects_total", reason="http") == 3
    assert_exact(db, feed)
    assert "reason=http" in logs.text


async def test_a_connection_cut_mid_frame_reconnects_and_the_hole_is_a_gap(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA", "BBB"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            await trades(feed, 10, ("AAA", "BBB"))
            await until(lambda: len(stored(db)) == 20)
            cut = await feed.cut_mid_frame("AAA")
            await feed.wait_clients()
            await trades(feed, 10, ("AAA", "BBB"))
            await until(lambda: len(stored(db)) == 40)
            await until(lambda: covered(gaps(db), "AAA", cut["t"]), what="a gap over the cut")
            assert p.metrics.value("reconnects_total") == 1
            assert p.metrics.value("gaps_total", provider="jsonfeed") >= 1
    assert_exact(db, feed)
    assert cut not in feed.delivered
    assert "connection.lost" in logs.text and "gap.detected" in logs.text


async def test_a_stall_past_the_keepalive_reopens_and_the_silence_is_a_gap(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            await trades(feed, 5)
            await until(lambda: len(stored(db)) == 5)
            feed.stalled = True
            await trades(feed, 3)  # sent into the silence: never delivered
            lost = list(feed.undelivered)
            await until(lambda: p.metrics.value("stalls_total") >= 1)
            feed.stalled = False
            await until(lambda: feed.connections >= 2 and len(feed.clients) == 1)
            await trades(feed, 5)
            await until(lambda: len(stored(db)) == 10)
            await until(lambda: all(covered(gaps(db), "AAA", m["t"]) for m in lost))
            assert p.metrics.value("reconnects_total", reason="stall") >= 1
    assert_exact(db, feed)
    assert "reason=stall" in logs.text


async def test_missing_heartbeats_are_no_stall_while_trades_flow_then_silence_is(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            feed.heartbeats = False
            for _ in range(10):  # a trade every 0.2 s keeps the 1 s keep-alive satisfied
                await feed.trade("AAA")
                await anyio.sleep(0.2)
            assert p.metrics.value("stalls_total") == 0
            await until(lambda: p.metrics.value("stalls_total") >= 1)  # now nothing at all
            feed.heartbeats = True
            await until(lambda: feed.connections >= 2 and len(feed.clients) == 1)
            await trades(feed, 5)
            await until(lambda: len(stored(db)) == 15)
    assert_exact(db, feed)


async def test_provider_error_messages_are_logged_counted_and_the_stream_goes_on(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            await trades(feed, 5)
            await feed.send_raw(json.dumps({"type": "error", "msg": "internal error, slow down"}))
            await trades(feed, 5)
            await until(lambda: len(stored(db)) == 10)
            assert p.metrics.value("notices_total", provider="jsonfeed") == 1
            assert p.metrics.value("reconnects_total") == 0
    assert_exact(db, feed)
    assert "provider.error" in logs.text and "internal error, slow down" in logs.text


async def test_one_rejected_symbol_leaves_the_others_streaming(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    feed = FaultFeed()
    feed.reject_symbols = {"BAD"}
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA", "BAD", "BBB"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            await trades(feed, 5, ("AAA", "BAD", "BBB"))
            await until(lambda: len(stored(db)) == 10)
            await until(lambda: "subscription.rejected" in logs.text)
            assert p.metrics.value("notices_total", provider="jsonfeed") == 1
            assert p.metrics.value("reconnects_total") == 0
    assert_exact(db, feed)
    assert {r[0] for r in stored(db)} == {"AAA", "BBB"}
    assert "symbol=BAD" in logs.text


@pytest.mark.parametrize(
    ("code", "reason"), [(4029, "rate limited"), (1008, "too many requests"), (1013, "try later")]
)
async def test_a_rate_limit_close_code_reconnects_and_loses_nothing_delivered(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture, code: int, reason: str
) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            await trades(feed, 5)
            await until(lambda: len(stored(db)) == 5)
            await feed.close_all(code, reason)
            await feed.wait_clients()
            await trades(feed, 5)
            await until(lambda: len(stored(db)) == 10)
            assert p.metrics.value("reconnects_total") == 1
    assert_exact(db, feed)
    assert "connection.lost" in logs.text


async def test_the_close_code_and_reason_are_named_in_the_log(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            await feed.close_all(4029, "rate limited")
            await feed.wait_clients()
    lost = [r.getMessage() for r in logs.records if "connection.lost" in r.getMessage()]
    assert lost and "4029" in lost[0] and "rate limited" in lost[0], lost


async def test_a_rate_limit_close_is_counted_as_rate_limited(tmp_path: Path, db: Path) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            await feed.close_all(4029, "rate limited")
            await feed.wait_clients()
            assert p.metrics.value("reconnects_total", reason="rate_limited") == 1


async def test_a_reconnect_storm_is_spread_by_jitter(tmp_path: Path, db: Path) -> None:
    n = 30
    symbols = [f"S{i:02d}" for i in range(n)]
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(
            tmp_path,
            [feed_source(feed, symbols, symbols_per_connection=1)],
            [sqlite_sink(db)],
            runner={"backoff_initial": "1s", "backoff_max": "5s"},
        )
        async with p:
            await feed.wait_clients(n)
            await trades(feed, 2, tuple(symbols))
            await until(lambda: len(stored(db)) == 2 * n)
            first = len(feed.subscribe_times)
            dropped_at = time.monotonic()
            await feed.drop_connections()
            await feed.wait_clients(n, timeout=30)
            after = sorted(t - dropped_at for t in feed.subscribe_times[first:])
            await trades(feed, 2, tuple(symbols))
            await until(lambda: len(stored(db)) == 4 * n)
    assert_exact(db, feed)
    assert len(after) == n
    spread = after[-1] - after[0]
    buckets = {round(t, 2) for t in after}
    print(
        f"reconnect storm: {n} connections back after {after[0]:.3f}..{after[-1]:.3f} s "
        f"(spread {spread:.3f} s, {len(buckets)} distinct 10 ms slots)"
    )
    # Full jitter over [0.5, 1] s: the reconnects must not come back all at once. (The slot
    # count is printed, not asserted: a loaded machine bunches the server's accepts.)
    assert spread >= 0.1


def test_the_first_reconnects_are_not_clumped_on_the_backoff_floor() -> None:
    rng = random.Random(8)
    delays = [Backoff(1.0, 60.0, rng).next() for _ in range(10_000)]
    on_floor = sum(d == 0.5 for d in delays) / len(delays)
    assert on_floor < 0.01, f"{on_floor:.0%} of first reconnects at exactly initial/2"


async def test_clock_skew_keeps_provider_timestamps_as_sent(tmp_path: Path, db: Path) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            now = time.time_ns()
            for offset in (3600 * S, -86400 * S, 0, 5 * S, -5 * S, 365 * 86400 * S):
                await feed.trade("AAA", ts=now + offset)
            await until(lambda: len(stored(db)) == 6)
    assert_exact(db, feed)


async def test_clock_skew_is_measured_and_logged(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            for _ in range(40):
                await feed.trade("AAA", ts=time.time_ns() + 3600 * S)
            await until(lambda: len(stored(db)) == 40)
            assert p.metrics.value("clock_skew_seconds", provider="jsonfeed") <= -3000
    assert "clock.skew" in logs.text


BAD_FRAMES: list[tuple[str, str | bytes]] = [
    ("invalid json", "{not json at all"),
    ("binary garbage", b"\xff\xfe\x00\x01"),
    ("wrong type: price a number", json.dumps(
        {"type": "trade", "s": "AAA", "p": 1.5, "q": "1", "t": 1, "id": 900})),
    ("wrong type: ts a string", json.dumps(
        {"type": "trade", "s": "AAA", "p": "1", "q": "1", "t": "yesterday", "id": 901})),
    ("missing fields", json.dumps({"type": "trade", "s": "AAA"})),
    ("negative size", json.dumps(
        {"type": "trade", "s": "AAA", "p": "1", "q": "-1", "t": 1, "id": 902})),
    ("NaN price", json.dumps(
        {"type": "trade", "s": "AAA", "p": "NaN", "q": "1", "t": 1, "id": 903})),
    ("NaN size", json.dumps(
        {"type": "trade", "s": "AAA", "p": "1", "q": "NaN", "t": 1, "id": 904})),
    ("price zero", json.dumps(
        {"type": "trade", "s": "AAA", "p": "0", "q": "1", "t": 1, "id": 905})),
    ("not a decimal", json.dumps(
        {"type": "trade", "s": "AAA", "p": "1,5", "q": "1", "t": 1, "id": 906})),
]  # fmt: skip


async def test_malformed_data_of_each_kind_is_counted_kept_aside_and_skipped(
    tmp_path: Path, db: Path, logs: pytest.LogCaptureFixture
) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            for _, frame in BAD_FRAMES:
                await feed.trade("AAA")
                await feed.send_raw(frame)
            await feed.trade("AAA")
            await until(lambda: len(stored(db)) == len(BAD_FRAMES) + 1)
            await until(
                lambda: p.metrics.value("malformed_total", provider="jsonfeed") == len(BAD_FRAMES)
            )
            assert p.metrics.value("reconnects_total") == 0
    assert_exact(db, feed)
    lines = [
        json.loads(line)
        for f in sorted((tmp_path / "deadletter").glob("*.jsonl*"))
        for line in f.read_text().splitlines()
    ]
    assert len(lines) == len(BAD_FRAMES)
    assert [line["frame"] for line in lines[2:]] == [f for _, f in BAD_FRAMES[2:]]
    assert logs.text.count("message.malformed") == len(BAD_FRAMES)


async def test_an_infinite_price_is_malformed(tmp_path: Path, db: Path) -> None:
    feed = FaultFeed()
    async with feed.running():
        p = pipeline(tmp_path, [feed_source(feed, ["AAA"])], [sqlite_sink(db)])
        async with p:
            await feed.wait_clients()
            await feed.send_raw(json.dumps(
                {"type": "trade", "s": "AAA", "p": "Infinity", "q": "1", "t": 1, "id": 7}
            ))  # fmt: skip
            await feed.trade("AAA")
            await until(lambda: len(stored(db)) >= 1)
            await anyio.sleep(0.3)
            assert p.metrics.value("malformed_total", provider="jsonfeed") == 1
    assert_exact(db, feed)
