"""Complete history (issue 5): bootstrap, restart, rate limits and stream holes, against the
fake Coinbase's own record, bucket by bucket."""

from __future__ import annotations

import itertools
import sqlite3
import sys
import time
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tickwire import Pipeline, Settings
from tickwire.history import align, candle_gaps, missing_spans
from tickwire_coinbase.testing import FakeCoinbase

sys.path.insert(0, str(Path(__file__).parent))
from conftest import clean_env, tickwire_cmd

S = 1_000_000_000
MIN = 60 * S


def settings_for(
    fake: FakeCoinbase,
    db: Path,
    tmp_path: Path,
    symbols: tuple[str, ...] | list[str] = ("BTC-USD", "ETH-USD"),
    **extra: object,
) -> Settings:
    return Settings(
        sources=[
            {
                "provider": "coinbase",
                "symbols": list(symbols),
                "channels": ["trades"],
                "ws_url": fake.ws_url,
                "rest_url": fake.rest_url,
            }
        ],
        sinks=[{"type": "sqlite", "path": str(db), "retention": "36500d"}],
        runner={
            "deadletter": str(tmp_path / "dl"),
            "backoff_initial": "50ms",
            "backoff_max": "500ms",
        },
        **extra,  # type: ignore[arg-type]
    )


def stored_candles(db: Path, symbol: str, start: int, end: int) -> list[tuple]:
    rows = sqlite3.connect(db).execute(
        "SELECT start, low, high, open, close, volume FROM candles WHERE symbol = ? AND "
        "interval = '1m' AND start >= ? AND start < ? ORDER BY start",
        (symbol, start, end),
    )
    return [(r[0], *(Decimal(v) for v in r[1:])) for r in rows]


def fake_candles(fake: FakeCoinbase, symbol: str, start: int, end: int) -> list[tuple]:
    rows = fake.candle_rows(symbol, 60, start, end - 1)
    return sorted((r[0] * S, *(Decimal(v) for v in r[1:])) for r in rows)


def candle_requests(fake: FakeCoinbase) -> list[dict[str, str]]:
    return [q for path, q in fake.rest_requests if path.endswith("/candles")]


@pytest.mark.anyio
@pytest.mark.timeout(400)
async def test_bootstrap_30_days_exactly_then_a_restart_fetches_nothing_stored(tmp_path):
    db = tmp_path / "h.db"
    async with FakeCoinbase(["BTC-USD"], seed=11, history_days=30.05, history_gap=6.0) as fake:
        fake.rate_limit_next_rest(3)
        settings = settings_for(fake, db, tmp_path, bootstrap={"days": 30}, symbols=["BTC-USD"])
        async with Pipeline(settings, stream=False) as pipeline:
            report = await pipeline.bootstrap()
        end = align(time.time_ns(), MIN)
        start = align(end - 30 * 86_400 * S, MIN)
        assert report.rate_limited == 3  # it slowed down, then completed
        first_requests = len(candle_requests(fake))
        for symbol in ("BTC-USD",):
            truth = fake_candles(fake, symbol, start, end - MIN)
            assert len(truth) >= 43_150  # a trade every ~6 s: (almost) every minute has one
            stored = stored_candles(db, symbol, start, end - MIN)
            assert stored == truth  # minute by minute, exact decimals, no duplicate
        # 300 buckets a request, plus the three rate-limited retries
        assert first_requests <= 43_200 // 300 + 2 + 3

        # A restart over the same window asks only for what came since.
        async with Pipeline(settings, stream=False) as pipeline:
            await pipeline.bootstrap()
        again = candle_requests(fake)[first_requests:]
        assert len(again) <= 1  # at most the tail that came since, never a stored range


@pytest.mark.anyio
async def test_the_backfill_command_resumes_without_refetching(tmp_path):
    db = tmp_path / "cli.db"
    async with FakeCoinbase(["BTC-USD"], seed=2, history_days=1.1, history_gap=30) as fake:
        config = tmp_path / "t.toml"
        config.write_text(f"""
[[sources]]
provider = "coinbase"
symbols = ["BTC-USD"]
ws_url = "{fake.ws_url}"
rest_url = "{fake.rest_url}"
[[sinks]]
type = "sqlite"
path = "{db}"
""")
        for _ in range(2):
            before = len(candle_requests(fake))
            proc = await anyio.run_process(
                tickwire_cmd("--log-format", "json", "backfill", "-c", str(config), "--days", "1"),
                env=clean_env(),
                check=False,
            )
            assert proc.returncode == 0, proc.stderr.decode()
            made = len(candle_requests(fake)) - before
        first = made  # noqa: F841 (the first run made the full set of requests)
        assert made <= 1, f"the second run made {made} candle requests"
        assert "candles for 1 symbols" in proc.stdout.decode()
    count = sqlite3.connect(db).execute("SELECT count(*) FROM candles").fetchone()[0]
    assert count > 1000


@pytest.mark.anyio
async def test_a_stream_outage_is_filled_from_rest_trade_by_trade_and_minute_by_minute(
    tmp_path,
):
    db = tmp_path / "o.db"
    t0 = align(time.time_ns(), MIN) - 12 * MIN
    async with FakeCoinbase(
        ["BTC-USD", "ETH-USD"], seed=4, history_days=0.01, history_gap=60, now=t0
    ) as fake:
        settings = settings_for(
            fake,
            db,
            tmp_path,
            bootstrap={"days": 0},
            candles={"intervals": ["1m"], "grace": "100ms", "refetch_delay": "100ms"},
        )
        async with Pipeline(settings) as pipeline:
            await fake.wait_subscribed(timeout=10)
            sent = []
            for i in range(3):  # seen live, minute t0
                sent.append(await fake.trade("BTC-USD", f"100.{i}0", "1", ts=t0 + i * S))
            await anyio.sleep(0.5)
            await fake.drop_connections()
            fake.reject_next_connections(3)  # down while "several minutes" of trades happen
            for minute in range(1, 6):  # trades the stream never sees
                for i in range(4):
                    ts = t0 + minute * MIN + i * 7 * S
                    sent.append(await fake.trade("BTC-USD", f"{101 + minute}.{i}", "0.5", ts=ts))
            await fake.wait_subscribed(1, timeout=15)
            sent.append(await fake.trade("BTC-USD", "110.00", "2", ts=t0 + 6 * MIN + S))
            with anyio.fail_after(30):
                while pipeline.metrics.value("gaps_filled_total", status="filled") < 2:
                    await anyio.sleep(0.1)
            await anyio.sleep(1.0)
        ids = {t.trade_id for t in sent}
        truth_trades = sorted(
            (t.trade_id, t.ts, t.price, t.size, t.side)
            for t in fake.trades("BTC-USD")
            if t.trade_id >= min(ids)
        )
        truth_candles = fake_candles(fake, "BTC-USD", t0, t0 + 6 * MIN)
    rows = (
        sqlite3.connect(db)
        .execute(
            "SELECT trade_id, ts, price, size, side FROM trades WHERE symbol = 'BTC-USD' "
            "AND CAST(trade_id AS INTEGER) >= ?",
            (min(ids),),
        )
        .fetchall()
    )
    stored = sorted((int(r[0]), r[1], Decimal(r[2]), Decimal(r[3]), r[4]) for r in rows)
    assert stored == truth_trades  # every missed trade is back, none twice
    assert stored_candles(db, "BTC-USD", t0, t0 + 6 * MIN) == truth_candles
    gaps = (
        sqlite3.connect(db)
        .execute("SELECT kind, reason, status FROM gaps WHERE symbol = 'BTC-USD'")
        .fetchall()
    )
    assert ("trades", "disconnect", "filled") in gaps


@given(st.lists(st.integers(0, 500), unique=True).map(sorted), st.sampled_from([1, 60]))
def test_candle_gap_detector_matches_a_direct_computation(buckets, length) -> None:
    starts = [b * length for b in buckets]
    expected = [
        (a + length, b) for a, b in itertools.pairwise(starts) if b - a >= 2 * length
    ]  # at least one whole bucket between: > 1.5 intervals
    assert candle_gaps(starts, length) == expected


@given(st.sets(st.integers(0, 99)), st.lists(st.tuples(st.integers(0, 99), st.integers(1, 20))))
def test_missing_spans_are_exactly_the_unstored_uncovered_buckets(stored, covered) -> None:
    spans = [(s, s + w) for s, w in covered]
    missing = missing_spans(0, 100, 1, sorted(stored), spans)
    got = {b for s, e in missing for b in range(s, e)}
    expected = {b for b in range(100) if b not in stored and not any(s <= b < e for s, e in spans)}
    assert got == expected
    assert all(e > s for s, e in missing)
