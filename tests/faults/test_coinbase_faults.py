"""Faults on the real Coinbase plugin against its protocol-faithful fake, into real SQLite:
trades withheld from the feed (revealed by the next trade, or only by heartbeats), a dropped
connection, handshakes refused with 503 and REST rate limits (429) during the backfill. Each
hole becomes a Gap, the backfill fills it from the REST history, and the store ends up holding
exactly the fake's trade history since the subscription: nothing lost, nothing duplicated."""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import sys
from decimal import Decimal
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from harness import gaps, pipeline, sqlite_sink, stored, until

import tickwire_coinbase
from tickwire import Pipeline
from tickwire_coinbase.testing import FakeCoinbase

pytestmark = pytest.mark.anyio
PRODUCTS = ("BTC-USD", "ETH-USD")


def coinbase_pipeline(
    tmp_path: Path, fake: FakeCoinbase, db: Path, candles: tuple[str, ...] = ()
) -> Pipeline:
    """The coinbase source on ``fake`` (trades of every product) into SQLite at ``db``."""
    source = {
        "provider": "coinbase",
        "symbols": list(PRODUCTS),
        "channels": ["trades"],
        "ws_url": fake.ws_url,
        "rest_url": fake.rest_url,
    }
    return pipeline(
        tmp_path, [source], [sqlite_sink(db)], plugins=(tickwire_coinbase,), candles=candles
    )


def truth(fake: FakeCoinbase, since: dict[str, int]) -> list[tuple[object, ...]]:
    rows = [
        (p, str(t.trade_id), t.ts, str(t.price), str(t.size), t.side)
        for p in PRODUCTS
        for t in fake.trades(p)
        if t.trade_id >= since[p]
    ]
    return sorted(rows, key=lambda r: (r[0], int(str(r[1]))))


async def test_withheld_trades_a_drop_refusals_and_rate_limits_end_in_the_exact_history(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tickwire")
    db = tmp_path / "cb.db"
    async with FakeCoinbase(PRODUCTS, seed=5, history_days=0.2, heartbeat_interval=0.2) as fake:
        fake.reject_next_connections(2)
        p = coinbase_pipeline(tmp_path, fake, db)
        async with p:
            await fake.wait_subscribed(timeout=30)
            # the last_match sent on subscribe is the first trade stored
            since = {prod: fake.last_trade_id(prod) for prod in PRODUCTS}
            await until(lambda: len(stored(db, "coinbase")) == 2)
            for i in range(10):
                await fake.trade(PRODUCTS[i % 2], f"{100 + i}.01", "0.5", "buy")
            # a hole revealed by the next trade (sequence gap), filled through 429s
            fake.rate_limit_next_rest(2)
            fake.withhold_trades("BTC-USD", 3)
            for i in range(5):
                await fake.trade("BTC-USD", f"{200 + i}.01", "0.25", "sell")
            # a dropped connection: what trades in the meantime reaches only the history
            await fake.drop_connections()
            for i in range(4):
                await fake.trade(PRODUCTS[i % 2], f"{300 + i}.01", "1", "buy")
            await fake.wait_subscribed(timeout=30)
            for i in range(4):
                await fake.trade(PRODUCTS[i % 2], f"{400 + i}.01", "1", "sell")
            # a hole at the end: no later trade, only heartbeats tell
            fake.withhold_trades("ETH-USD", 2)
            for i in range(2):
                await fake.trade("ETH-USD", f"{500 + i}.01", "2", "buy")
            want = truth(fake, since)
            await until(
                lambda: stored(db, "coinbase") == want,
                timeout=60,
                what="the store to match the fake's history",
            )
            await until(lambda: all(g[5] != "open" for g in gaps(db)), timeout=30)
            assert p.metrics.value("reconnects_total", reason="http") == 2
            assert p.metrics.value("reconnects_total") >= 3
            assert p.metrics.value("gaps_total", provider="coinbase") >= 3
    rows = stored(db, "coinbase")
    assert rows == want
    assert len(rows) == len({(r[0], r[1]) for r in rows})
    found = gaps(db)
    assert {g[0] for g in found} == set(PRODUCTS)
    assert all(g[5] == "filled" for g in found), found
    assert "gap.detected" in caplog.text and "reason=http" in caplog.text


async def test_two_gaps_in_one_candle_bucket_do_not_break_the_connection(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tickwire")
    db = tmp_path / "cb.db"
    async with FakeCoinbase(PRODUCTS, seed=6, history_days=0.2, heartbeat_interval=0.2) as fake:
        p = coinbase_pipeline(tmp_path, fake, db, candles=("1m",))
        async with p:
            await fake.wait_subscribed(timeout=30)
            since = {prod: fake.last_trade_id(prod) for prod in PRODUCTS}
            for prod in PRODUCTS:  # one hole per product, in the same minute
                fake.withhold_trades(prod, 2)
                for i in range(3):
                    await fake.trade(prod, f"{100 + i}.01", "0.5", "buy")
            want = truth(fake, since)
            await until(lambda: stored(db, "coinbase") == want, timeout=30)
            assert p.metrics.value("gaps_total", provider="coinbase") == 2
            assert p.metrics.value("reconnects_total") == 0


async def test_the_trade_replayed_after_a_reconnect_is_not_counted_twice_in_a_candle(
    tmp_path: Path,
) -> None:
    # Coinbase answers every subscribe with last_match, the last trade, which the stream had
    # already delivered: the store keeps it once (by id), and so must the candle builder.
    db = tmp_path / "cb.db"
    async with FakeCoinbase(PRODUCTS, seed=8, history_days=0.01) as fake:
        p = coinbase_pipeline(tmp_path, fake, db, candles=("1m",))
        async with p:
            await fake.wait_subscribed(timeout=30)
            since = {prod: fake.last_trade_id(prod) for prod in PRODUCTS}
            for round_ in range(3):
                for prod in PRODUCTS:
                    await fake.trade(prod, f"{100 + round_}.5", "0.25", "buy")
                await until(lambda: len(stored(db, "coinbase")) == len(truth(fake, since)))
                await fake.drop_connections()  # nothing is missed: the replay is the only echo
                await fake.wait_subscribed(timeout=30)
            want = truth(fake, since)
            await until(lambda: stored(db, "coinbase") == want, timeout=30)
        assert p.metrics.value("gaps_total", provider="coinbase") == 0
    # What the builder made of it (the still-forming candles are flushed at shutdown).
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute(
            "SELECT symbol, start, trades, volume FROM candles WHERE source = 'built'"
        ).fetchall()
    candles = {(sym, start): (n, Decimal(volume)) for sym, start, n, volume in rows}
    minute = 60 * 10**9
    for prod in PRODUCTS:
        seen = [t for t in fake.trades(prod) if t.trade_id >= since[prod]]
        for start in {t.ts - t.ts % minute for t in seen}:
            bucket = [t for t in seen if start <= t.ts < start + minute]
            assert candles[(prod, start)] == (
                len(bucket),
                sum((t.size for t in bucket), Decimal(0)),
            )
