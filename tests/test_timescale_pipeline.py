"""Fake Coinbase → the real Pipeline → the timescale sink on the real PostgreSQL.

The stored trades and 1-minute candles equal what the fake exchange sent (its own record),
exactly (``numeric``: ``100.10`` keeps its zero), nothing twice, and the same after the pipeline
is stopped and started again (the restarted feed sends its ``last_match`` again, and the minute
that spans the restart gets trades from both runs).
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import anyio
import asyncpg
import pytest

from tickwire import Pipeline, Settings
from tickwire.history import align
from tickwire_coinbase.testing import FakeCoinbase

sys.path.insert(0, str(Path(__file__).parent))
from conftest import PG_DSN

pytestmark = pytest.mark.anyio

S = 1_000_000_000
MIN = 60 * S
SYMBOLS = ("BTC-USD", "ETH-USD")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * S + delta.microseconds * 1000


def settings_for(fake: FakeCoinbase, schema: str, tmp_path: Path) -> Settings:
    return Settings(
        sources=[
            {
                "provider": "coinbase",
                "symbols": list(SYMBOLS),
                "channels": ["trades"],
                "ws_url": fake.ws_url,
                "rest_url": fake.rest_url,
            }
        ],
        sinks=[{"type": "timescale", "dsn": PG_DSN, "schema": schema, "retention": "36500d"}],
        candles={"intervals": ["1m"], "grace": "100ms"},
        bootstrap={"days": 0},
        runner={"deadletter": str(tmp_path / "dl"), "backoff_initial": "50ms"},
    )


async def publish(fake: FakeCoinbase, minute: int, t0: int) -> None:
    """Three trades per symbol in minute ``t0 + minute``, prices with trailing zeros."""
    for i in range(3):
        for k, symbol in enumerate(SYMBOLS):
            ts = t0 + minute * MIN + (10 * i + k + 1) * S
            price = f"{100 * (k + 1) + minute}.{i}0"
            await fake.trade(symbol, price, f"0.{i + 1}0000000", "buy" if i % 2 else "sell", ts=ts)


async def stored(pg: asyncpg.Connection, schema: str, symbol: str) -> tuple[list, list]:
    trades = await pg.fetch(
        f"SELECT trade_id, ts, price, size, side FROM {schema}.trades"
        " WHERE provider = 'coinbase' AND symbol = $1",
        symbol,
    )
    candles = await pg.fetch(
        f"SELECT start, low, high, open, close, volume FROM {schema}.candles"
        " WHERE provider = 'coinbase' AND symbol = $1 AND \"interval\" = '1m' ORDER BY start",
        symbol,
    )
    return (
        sorted((int(r[0]), _ns(r[1]), str(r[2]), str(r[3]), r[4]) for r in trades),
        [(_ns(r[0]), *(str(v) for v in r[1:])) for r in candles],
    )


async def wait_stored(pg: asyncpg.Connection, schema: str, fake: FakeCoinbase, first: dict) -> None:
    """Until every trade the fake has sent since ``first`` is in the table (the runner's own
    pace: batches of up to ``flush_interval``)."""
    want = sum(len([t for t in fake.trades(s) if t.trade_id >= first[s]]) for s in SYMBOLS)
    with anyio.fail_after(30):
        while True:
            got = (
                await pg.fetchval(
                    f"SELECT count(*) FROM {schema}.trades WHERE provider = 'coinbase'"
                )
                if await pg.fetchval("SELECT to_regclass($1)", f"{schema}.trades")
                else 0
            )
            if got >= want:
                return
            await anyio.sleep(0.05)


def truth(fake: FakeCoinbase, symbol: str, first_id: int, t0: int) -> tuple[list, list]:
    trades = sorted(
        (t.trade_id, t.ts, str(t.price), str(t.size), t.side)
        for t in fake.trades(symbol)
        if t.trade_id >= first_id
    )
    rows = fake.candle_rows(symbol, 60, t0 + MIN, t0 + 6 * MIN - 1)
    candles = sorted((r[0] * S, *(str(v) for v in r[1:])) for r in rows)
    return trades, candles


async def run_twice(
    pg: asyncpg.Connection, schema: str, tmp_path: Path
) -> tuple[int, dict[str, tuple[list, list]], dict[str, tuple[list, list]]]:
    """Run the pipeline over minutes 1-3, stop, run it again over minutes 4-5 (the fake's
    ``last_match`` on the second subscribe is the last trade of minute 3, already stored).
    Returns ``t0``, what is stored and what the fake sent, per symbol."""
    t0 = align(time.time_ns(), MIN) - 10 * MIN
    async with FakeCoinbase(SYMBOLS, seed=5, history_days=0.01, history_gap=60, now=t0) as fake:
        # The feed's last_match on subscribe is the newest history trade: stored from it on.
        first = {s: fake.last_trade_id(s) for s in SYMBOLS}
        settings = settings_for(fake, schema, tmp_path)
        async with Pipeline(settings):
            await fake.wait_subscribed(timeout=15)
            for minute in (1, 2, 3):
                await publish(fake, minute, t0)
            await wait_stored(pg, schema, fake, first)
        with anyio.fail_after(15):  # the first run's connection is gone
            while fake.connections:
                await anyio.sleep(0.01)
        async with Pipeline(settings):
            await fake.wait_subscribed(timeout=15)
            for minute in (4, 5):
                await publish(fake, minute, t0)
            for symbol in SYMBOLS:  # closes minute 5
                await fake.trade(symbol, "999.00", "1", ts=t0 + 6 * MIN + S)
            await wait_stored(pg, schema, fake, first)
        expected = {s: truth(fake, s, first[s], t0) for s in SYMBOLS}
    got = {s: await stored(pg, schema, s) for s in SYMBOLS}
    return t0, got, expected


async def test_trades_and_candles_equal_the_fake_exactly_across_a_restart(
    pg: asyncpg.Connection, schema: str, tmp_path: Path
) -> None:
    t0, got, expected = await run_twice(pg, schema, tmp_path)
    minute3 = t0 + 3 * MIN
    for symbol in SYMBOLS:
        trades, candles = got[symbol]
        want_trades, want_candles = expected[symbol]
        assert trades == want_trades  # every trade once (the replayed last_match too), exact
        assert len(want_trades) == 1 + 15 + 1  # last_match, 5 x 3 published, the closer
        window = [c for c in candles if t0 + MIN <= c[0] < t0 + 6 * MIN and c[0] != minute3]
        assert window == [c for c in want_candles if c[0] != minute3]  # minute by minute
        assert len(window) == 4
    dup = await pg.fetchval(
        f"SELECT count(*) - count(DISTINCT (symbol, trade_id)) FROM {schema}.trades"
    )
    assert dup == 0
    texts = await pg.fetch(f"SELECT price::text FROM {schema}.trades WHERE price = 101")
    assert [r[0] for r in texts] == ["101.00"]  # the scale the exchange sent


async def test_the_candle_of_the_last_minute_before_a_restart_survives_it(
    pg: asyncpg.Connection, schema: str, tmp_path: Path
) -> None:
    t0, got, expected = await run_twice(pg, schema, tmp_path)
    minute3 = t0 + 3 * MIN
    for symbol in SYMBOLS:
        stored_3 = [c for c in got[symbol][1] if c[0] == minute3]
        assert stored_3 == [c for c in expected[symbol][1] if c[0] == minute3]
