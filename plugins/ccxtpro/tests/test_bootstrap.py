"""Issue 5 with the ccxt fake: the core bootstrap through a Pipeline into SQLite, minute by
minute against the fake's own klines, and a second run that fetches nothing stored."""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tickwire import Pipeline, Settings
from tickwire_ccxtpro.testing import FakeBinance

SYMBOL = "BTC/USDT"
MIN_NS = 60 * 10**9


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_bootstrap_equals_the_fake_record_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "ccxt.db"
    async with FakeBinance([SYMBOL], rate_per_s=0, max_rows=1000) as fake:
        settings = Settings(
            sources=[fake.source(channels=["trades"])],
            sinks=[{"type": "sqlite", "path": str(db), "retention": "36500d"}],
            bootstrap={"days": 2},
            runner={"deadletter": str(tmp_path / "dl")},
        )
        now = time.time_ns()
        start = (now - 2 * 86_400 * 10**9) // MIN_NS * MIN_NS
        fake.empty_minutes = {start // MIN_NS + 100, start // MIN_NS + 101}
        async with Pipeline(settings, stream=False) as pipeline:
            report = await pipeline.bootstrap()
        end = now // MIN_NS * MIN_NS
        first_calls = fake.rest_calls.get("klines", 0)
        async with Pipeline(settings, stream=False) as pipeline:
            await pipeline.bootstrap()
        again = fake.rest_calls.get("klines", 0) - first_calls
        rows = (
            sqlite3.connect(db)
            .execute(
                "SELECT start, open, high, low, close, volume FROM candles WHERE symbol = ? "
                "AND start >= ? AND start < ? ORDER BY start",
                (SYMBOL, start, end - MIN_NS),
            )
            .fetchall()
        )
        truth = []
        for s in range(start, end - MIN_NS, MIN_NS):
            row = fake.kline_row("1m", s // 10**6)
            if row is not None:
                truth.append((s, *(Decimal(v) for v in row[1:6])))
    stored = [(r[0], *(Decimal(v) for v in r[1:])) for r in rows]
    assert stored == truth  # every minute the exchange has, exact, the empty ones absent
    assert report.candles >= len(truth)
    assert again <= 1  # the restart asks at most for the tail that came since
