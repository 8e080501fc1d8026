"""Issue 5 with the IG fake: the core bootstrap through a Pipeline into SQLite equals the fake's
own /prices history (mid prices) minute by minute; a restart fetches at most the new tail."""

from __future__ import annotations

import sqlite3
import time
from decimal import Decimal
from pathlib import Path

import pytest

from tickwire import Pipeline, Settings
from tickwire_ig.testing import FakeIG

from .conftest import EPIC, source_for

MIN = 60 * 10**9


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_bootstrap_equals_the_fake_record_and_resumes(tmp_path: Path) -> None:
    db = tmp_path / "ig.db"
    async with FakeIG() as fake:
        settings = Settings(
            sources=[source_for(fake, channels=["quotes"])],
            sinks=[{"type": "sqlite", "path": str(db), "retention": "36500d"}],
            bootstrap={"days": 0.25},
            runner={"deadletter": str(tmp_path / "dl")},
        )
        now = time.time_ns()
        async with Pipeline(settings, stream=False) as pipeline:
            report = await pipeline.bootstrap()
        calls = len(fake.price_requests)
        async with Pipeline(settings, stream=False) as pipeline:
            await pipeline.bootstrap()
        again = len(fake.price_requests) - calls
        start = (now - 6 * 3600 * 10**9) // MIN * MIN
        end = now // MIN * MIN
        truth = []
        for s in range(start, end - MIN, MIN):
            row = fake.history_bar(EPIC, 60_000, s // 1_000_000)
            mids = [
                (Decimal(str(row[p]["bid"])) + Decimal(str(row[p]["ask"]))) / 2
                for p in ("openPrice", "highPrice", "lowPrice", "closePrice")
            ]
            truth.append((s, *mids))
    rows = (
        sqlite3.connect(db)
        .execute(
            "SELECT start, open, high, low, close FROM candles WHERE symbol = ? "
            "AND interval = '1m' AND start >= ? AND start < ? ORDER BY start",
            (EPIC, start, end - MIN),
        )
        .fetchall()
    )
    stored = [(r[0], *(Decimal(v) for v in r[1:])) for r in rows]
    assert stored == truth
    assert report.candles >= len(truth)
    assert again <= 1
