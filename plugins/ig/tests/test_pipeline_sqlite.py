"""End to end: the real SDK over the fake IG, through a Pipeline, into the SQLite sink."""

from __future__ import annotations

import logging
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest

from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire_ig.testing import API_KEY, PASSWORD, USERNAME, FakeIG

from .conftest import EPIC, TRADED, source_for

pytestmark = pytest.mark.anyio


def _settings(source: dict[str, Any], db: Path, tmp_path: Path) -> Settings:
    return Settings(
        sources=[source],
        sinks=[{"type": "sqlite", "path": str(db), "retention": "36500d"}],
        candles={"intervals": ["1m"]},
        bootstrap={"days": 0},
        runner={"backoff_initial": "50ms", "backoff_max": "1s", "deadletter": str(tmp_path)},
    )


async def _until(predicate: Any, timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.05)


def _mid(bid: Decimal, ofr: Decimal) -> Decimal:
    return (bid + ofr) / 2


async def test_quotes_ticks_and_candles_stored_exactly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    db = tmp_path / "ig.db"
    async with FakeIG(
        epics=[EPIC, TRADED], traded=(TRADED,), tick_interval=0.01, time_step_ms=1000
    ) as fake:
        source = source_for(fake, [EPIC, TRADED], channels=["quotes", "trades", "candles"])
        pipeline = Pipeline(_settings(source, db, tmp_path))

        def count(kind: str) -> float:
            return pipeline.metrics.value("events_total", provider="ig", kind=kind)

        async with pipeline:
            # three 1-minute candles closed per epic (a market second per tick)
            await _until(
                lambda: all(
                    sum(b.closed for b in fake.candles[(e, "1MINUTE")].values()) >= 3
                    for e in (EPIC, TRADED)
                )
            )
            fake.paused = True
            quotes = sum(len(v) for v in fake.price_updates.values())
            ticks = len(fake.tick_updates[TRADED])
            await _until(lambda: count("quote") >= quotes and count("trade") >= ticks)
        tokens = list(fake._tokens.items())

    with sqlite3.connect(db) as conn:
        for epic in (EPIC, TRADED):
            rows = conn.execute(
                "SELECT ts, bid, ask, bid_size, ask_size FROM quotes WHERE symbol = ? ORDER BY ts",
                (epic,),
            ).fetchall()
            sent = [
                (t.ts_ms * 1_000_000, t.bid, t.offer, "1000000", "1000000")
                for t in fake.price_updates[epic]
            ]
            assert rows == sent
        trades = conn.execute(
            "SELECT ts, price, size, side, trade_id FROM trades WHERE symbol = ? ORDER BY ts",
            (TRADED,),
        ).fetchall()
        assert trades == [
            (t.ts_ms * 1_000_000, t.last, t.volume, None, None) for t in fake.tick_updates[TRADED]
        ]
        assert conn.execute("SELECT count(*) FROM trades WHERE symbol = ?", (EPIC,)).fetchone() == (
            0,
        )
        for epic in (EPIC, TRADED):
            stored = {
                row[0]: row[1:]
                for row in conn.execute(
                    "SELECT start, open, high, low, close, closed, source, basis FROM candles "
                    "WHERE symbol = ? AND interval = '1m'",
                    (epic,),
                )
            }
            closed = {s: b for s, b in fake.candles[(epic, "1MINUTE")].items() if b.closed}
            assert len(closed) >= 3
            for start_ms, bar in closed.items():
                want = tuple(str(_mid(bar.bid[i], bar.ofr[i])) for i in range(4))
                assert stored[start_ms * 1_000_000] == (*want, 1, "stream", "mid")
        # no built 1m candle competes with the streamed one
        assert conn.execute(
            "SELECT count(*) FROM candles WHERE source = 'built' AND interval = '1m'"
        ).fetchone() == (0,)

    # secrets never in the log: ours, the runner's and the SDK's own (at DEBUG)
    text = caplog.text
    assert "WS sending: create_session" in text  # the SDK's DEBUG log was captured
    assert "LS_password=***" in text
    for secret in (API_KEY, PASSWORD, USERNAME):
        assert secret not in text
    for cst, token in tokens:
        assert cst not in text and token.xst not in text
