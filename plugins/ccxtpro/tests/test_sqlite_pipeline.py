"""End to end: the fake Binance, the real ccxt.pro, the plugin, the runner, into SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from tickwire.pipeline import Pipeline
from tickwire.testing import MemorySink
from tickwire_ccxtpro.testing import FakeBinance

SYMBOL = "BTC/USDT"


@pytest.mark.anyio
async def test_pipeline_into_sqlite(make_pipeline: Callable[..., Pipeline], tmp_path: Path) -> None:
    db = tmp_path / "ticks.db"
    async with FakeBinance([SYMBOL, "ETH/USDT"], rate_per_s=0) as fake:
        sink = MemorySink()
        source = fake.source(channels=["trades", "candles"])
        pipeline = make_pipeline(
            source, sink=sink, sinks=[{"type": "sqlite", "path": str(db)}], intervals=["1m"]
        )
        async with pipeline:
            await fake.subscribed("btcusdt@aggTrade")
            await fake.subscribed("ethusdt@aggTrade")
            btc = await fake.burst(SYMBOL, 5000)
            eth = await fake.burst("ETH/USDT", 1000)
            await sink.wait_for(lambda m: len(m.of("trade")) >= 6000, 60)
            await anyio.sleep(0.5)  # the sqlite sink flushes every 200 ms
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT provider, symbol, trade_id, ts, price, size, side FROM trades "
            "ORDER BY symbol, CAST(trade_id AS INTEGER)"
        ).fetchall()
        candles = conn.execute("SELECT DISTINCT source FROM candles").fetchall()
    want = sorted(
        (
            ("ccxt:binance", sym, str(t.id), t.ts * 10**6, t.price, t.qty)
            for sym, tape in ((SYMBOL, btc), ("ETH/USDT", eth))
            for t in tape
        ),
        key=lambda r: (r[1], int(r[2])),
    )
    assert [(p, s, i, ts, Decimal(px), Decimal(q)) for p, s, i, ts, px, q, _ in rows] == [
        (p, s, i, ts, Decimal(px), Decimal(q)) for p, s, i, ts, px, q in want
    ]
    # the burst made no kline updates, so no streamed candles: the builder does not build them
    # either, because this source streams its own candles
    assert ("built",) not in candles
