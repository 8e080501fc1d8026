"""Issue 5 with the Finnhub fake: the core bootstrap through a Pipeline into SQLite equals the
fake's own bars minute by minute (minutes without a bar stay absent); a restart fetches at most
the new tail."""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tickwire import Pipeline, Settings
from tickwire_finnhub.testing import FakeFinnhub

SYMBOL = "BINANCE:BTCUSDT"
MIN = 60


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_bootstrap_equals_the_fake_record_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "fh.db"
    now = int(time.time())
    first = (now - 86_400) // MIN * MIN
    bars = [
        (
            t,
            f"{65000 + i % 97}.5",
            f"{65100 + i % 97}.25",
            f"{64900 + i % 97}",
            f"{65010 + i}.1",
            f"{i % 13}.125",
        )
        for i, t in enumerate(range(first - 10 * MIN, now + MIN, MIN))
        if i % 50 != 7  # some minutes have no bar, as on a real exchange
    ]
    async with FakeFinnhub() as fake:
        fake.add_candles(SYMBOL, "1", bars)
        settings = Settings(
            sources=[
                {
                    "provider": "finnhub",
                    "symbols": [SYMBOL],
                    "api_key": fake.api_key,
                    "ws_url": fake.ws_url,
                    "rest_url": fake.rest_url,
                }
            ],
            sinks=[{"type": "sqlite", "path": str(db), "retention": "36500d"}],
            bootstrap={"days": 1},
            runner={"deadletter": str(tmp_path / "dl")},
        )
        async with Pipeline(settings, stream=False) as pipeline:
            await pipeline.bootstrap()
        calls = len(fake.requests)
        async with Pipeline(settings, stream=False) as pipeline:
            await pipeline.bootstrap()
        again = len(fake.requests) - calls
    end = now // MIN * MIN
    rows = (
        sqlite3.connect(db)
        .execute(
            "SELECT start, open, high, low, close, volume FROM candles WHERE symbol = ? AND "
            "start >= ? AND start < ? ORDER BY start",
            (SYMBOL, first * 10**9, (end - MIN) * 10**9),
        )
        .fetchall()
    )
    stored = [(r[0] // 10**9, *(Decimal(v) for v in r[1:])) for r in rows]
    truth = [(t, *(Decimal(v) for v in bar)) for t, *bar in bars if first <= t < end - MIN]
    assert stored == truth
    assert again <= 1
