"""End to end: tickwire's Pipeline over the fake Finnhub into SQLite, with logs at DEBUG."""

from __future__ import annotations

import logging
import socket
import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

import tickwire_finnhub
import tickwire_sqlite
from tickwire.events import Event, Gap, Trade
from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire_finnhub.testing import FakeFinnhub

pytestmark = pytest.mark.anyio
TOKEN = "tok-SECRET-5f3a9c"
NS = 1_000_000_000
MS = 1_000_000
SYMBOLS = ["AAPL", "OANDA:EUR_USD", "BINANCE:BTCUSDT"]
T0 = 1_700_000_040  # unix s, a minute boundary
T0_MS = T0 * 1000


def settings_for(tmp_path: Path, ws_url: str, rest_url: str, **source: Any) -> Settings:
    return Settings(
        sources=[
            {
                "provider": "finnhub",
                "symbols": SYMBOLS,
                "api_key": TOKEN,
                "ws_url": ws_url,
                "rest_url": rest_url,
                "rest_calls_per_minute": 6000,
                **source,
            }
        ],
        sinks=[
            {
                "type": "sqlite",
                "path": str(tmp_path / "tw.db"),
                "retention": "36500d",
                "flush_interval": "20ms",
            }
        ],
        candles={"intervals": []},
        bootstrap={"days": 0},
        runner={"deadletter": str(tmp_path / "deadletter"), "backoff_initial": "50ms"},
    )


def rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql).fetchall()


def release(pipeline: Pipeline) -> None:
    """Nothing left to release: core closes its backfill queues at shutdown (kept so the
    tests read as before)."""
    for worker in pipeline.backfillers.values():
        worker.close()


def written(db: Path) -> bool:
    try:
        return bool(rows(db, "SELECT 1 FROM trades"))
    except sqlite3.OperationalError:  # the sink has not created its schema yet
        return False


def assert_no_token(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    assert caplog.records, "nothing was logged: the check would prove nothing"
    for record in caplog.records:
        assert TOKEN not in record.getMessage(), record.getMessage()
        assert TOKEN not in repr(record.__dict__), record.__dict__
    assert TOKEN not in caplog.text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path


async def test_pipeline_into_sqlite_exact_rows_and_no_token_in_any_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeFinnhub(api_keys=[TOKEN], ping_interval=0.1) as fake:
        fake.add_candles(
            "AAPL",
            "1",
            [
                (T0, "189.10", "189.60", "189.00", "189.50", 12000),
                (T0 + 60, "189.50", "190.00", "189.40", "189.95", 800),
            ],
        )
        fake.add_candles(
            "OANDA:EUR_USD", "1", [(T0, "1.08540", "1.08561", "1.08530", "1.08555", "0")]
        )
        fake.add_candles(
            "BINANCE:BTCUSDT",
            "1",
            [(T0, "36500.01", "36510.5", "36499.99", "36505.25", "12.34567")],
        )
        fake.rate_limit_next(1)  # the first REST call is told 429 and retried by the runner
        pipeline = Pipeline(
            settings_for(tmp_path, fake.ws_url, fake.rest_url),
            plugins=[tickwire_finnhub, tickwire_sqlite],
            entry_points=False,
        )
        seen: list[Event] = []

        async def tap() -> None:
            async for event in pipeline.events():
                seen.append(event)

        async def until(predicate: Any) -> None:
            with anyio.fail_after(10):
                while not predicate():
                    await anyio.sleep(0.01)

        def trades() -> int:
            return sum(isinstance(e, Trade) for e in seen)

        async with pipeline, anyio.create_task_group() as tg:
            tg.start_soon(tap)
            await until(lambda: pipeline.fanout.taps)
            await fake.wait_subscribed(SYMBOLS)
            message = [
                {"s": "AAPL", "p": "189.52", "t": T0_MS + 5, "v": 100, "c": ["1", "12"]},
                {"s": "BINANCE:BTCUSDT", "p": "36501.10", "t": T0_MS + 5, "v": "0.0015", "c": None},
                {"s": "AAPL", "p": "189.52", "t": T0_MS + 5, "v": 100, "c": ["1", "12"]},
                {"s": "OANDA:EUR_USD", "p": "1.08551", "t": T0_MS + 6, "v": "0"},
                {"s": "OANDA:EUR_USD", "p": "1.08552", "t": T0_MS + 7, "v": 250000},
            ]
            assert await fake.send_trades(message) == 1
            assert await fake.send_trades(message) == 1  # a duplicate delivery
            await until(lambda: trades() == 8)
            # An outage: the runner reconnects with the same single connection, resubscribes,
            # and the first AAPL trade after it closes a disconnect window.
            await fake.drop_connections()
            await fake.wait_for(lambda f: len(f.connections) == 2)
            await fake.wait_subscribed(SYMBOLS)
            await fake.send_trades([{"s": "AAPL", "p": "190", "t": T0_MS + 9000, "v": 1}])
            await until(lambda: trades() == 9)
            worker = pipeline.backfillers["finnhub"]
            for symbol in SYMBOLS:
                await worker.fill(
                    Gap("finnhub", symbol, "candles:1m", T0 * NS, (T0 + 120) * NS, "startup")
                )
            await worker.fill(
                Gap("finnhub", "AAPL", "candles:1m", (T0 - 3600) * NS, (T0 - 3540) * NS, "startup")
            )
            tg.cancel_scope.cancel()
        release(pipeline)
        assert len(fake.connections) == 2
        assert not fake.live or len(fake.live) == 1

    db = tmp_path / "tw.db"
    assert rows(
        db,
        "SELECT provider, symbol, ts, price, size, side, trade_id FROM trades "
        "ORDER BY symbol, ts, trade_id",
    ) == [
        (
            "finnhub",
            "AAPL",
            (T0_MS + 5) * MS,
            "189.52",
            "100",
            None,
            f"{T0_MS + 5}:189.52:100:1,12:0",
        ),
        (
            "finnhub",
            "AAPL",
            (T0_MS + 5) * MS,
            "189.52",
            "100",
            None,
            f"{T0_MS + 5}:189.52:100:1,12:1",
        ),
        ("finnhub", "AAPL", (T0_MS + 9000) * MS, "190", "1", None, f"{T0_MS + 9000}:190:1::0"),
        (
            "finnhub",
            "BINANCE:BTCUSDT",
            (T0_MS + 5) * MS,
            "36501.10",
            "0.0015",
            None,
            f"{T0_MS + 5}:36501.10:0.0015::0",
        ),
        (
            "finnhub",
            "OANDA:EUR_USD",
            (T0_MS + 7) * MS,
            "1.08552",
            "250000",
            None,
            f"{T0_MS + 7}:1.08552:250000::0",
        ),
    ]
    (received,) = rows(db, "SELECT min(received_ts) FROM trades")[0:1]
    assert received[0] > (T0_MS + 9000) * MS
    assert rows(db, "SELECT count(*) FROM quotes") == [(0,)]  # v == 0 is not a quote either
    assert rows(
        db,
        "SELECT provider, symbol, interval, start, open, high, low, close, volume, "
        "trades, basis, closed, source FROM candles ORDER BY symbol, start",
    ) == [
        (
            "finnhub",
            "AAPL",
            "1m",
            T0 * NS,
            "189.10",
            "189.60",
            "189.00",
            "189.50",
            "12000",
            None,
            "trade",
            1,
            "backfill",
        ),
        (
            "finnhub",
            "AAPL",
            "1m",
            (T0 + 60) * NS,
            "189.50",
            "190.00",
            "189.40",
            "189.95",
            "800",
            None,
            "trade",
            1,
            "backfill",
        ),
        (
            "finnhub",
            "BINANCE:BTCUSDT",
            "1m",
            T0 * NS,
            "36500.01",
            "36510.5",
            "36499.99",
            "36505.25",
            "12.34567",
            None,
            "trade",
            1,
            "backfill",
        ),
        (
            "finnhub",
            "OANDA:EUR_USD",
            "1m",
            T0 * NS,
            "1.08540",
            "1.08561",
            "1.08530",
            "1.08555",
            "0",
            None,
            "trade",
            1,
            "backfill",
        ),
    ]
    assert rows(
        db,
        'SELECT provider, symbol, kind, start, "end", reason, status FROM gaps '
        "ORDER BY symbol, kind, start",
    ) == [
        ("finnhub", "AAPL", "candles:1m", (T0 - 3600) * NS, (T0 - 3540) * NS, "startup", "empty"),
        ("finnhub", "AAPL", "candles:1m", T0 * NS, (T0 + 120) * NS, "startup", "filled"),
        ("finnhub", "AAPL", "trades", (T0_MS + 5) * MS, (T0_MS + 9000) * MS, "disconnect", "open"),
        ("finnhub", "BINANCE:BTCUSDT", "candles:1m", T0 * NS, (T0 + 120) * NS, "startup", "filled"),
        ("finnhub", "OANDA:EUR_USD", "candles:1m", T0 * NS, (T0 + 120) * NS, "startup", "filled"),
    ]
    paths = [p for p, _ in fake.requests]
    assert paths.count("/stock/candle") == 3  # 429, its retry, and the no_data range
    assert paths.count("/forex/candle") == 1
    assert paths.count("/crypto/candle") == 1
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("backfill.rate_limited") for m in messages)
    # The websockets client's DEBUG request line is there, with the token redacted.
    assert any(m.startswith("> GET /?") for m in messages)
    assert_no_token(caplog, tmp_path)


async def test_refused_and_rejected_connections_never_log_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"ws://127.0.0.1:{sock.getsockname()[1]}/"
    pipeline = Pipeline(
        settings_for(tmp_path, closed, "http://127.0.0.1:9/api/v1"),
        plugins=[tickwire_finnhub, tickwire_sqlite],
        entry_points=False,
    )
    await pipeline.run(duration=0.5)
    release(pipeline)
    failed = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("connection.failed")
    ]
    assert failed and all("reason=refused" in m for m in failed)

    async with FakeFinnhub(api_keys=["some-other-key"]) as fake:  # our token is refused: 401
        pipeline = Pipeline(
            settings_for(tmp_path, fake.ws_url, fake.rest_url),
            plugins=[tickwire_finnhub, tickwire_sqlite],
            entry_points=False,
        )
        await pipeline.run(duration=0.5)
        release(pipeline)
        assert fake.rejected_handshakes >= 1
    failed = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("connection.failed")
    ]
    assert any("reason=auth" in m and "HTTP 401" in m for m in failed)
    assert_no_token(caplog, tmp_path)


async def test_too_many_symbols_and_invalid_symbol_are_logged_and_the_others_go_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with FakeFinnhub(
        api_keys=[TOKEN], max_symbols=2, symbols={"AAPL", "OANDA:EUR_USD", "BINANCE:BTCUSDT"}
    ) as fake:
        # The plan setting says 3, the server allows 2 (a plan changed under us, say).
        settings = settings_for(tmp_path, fake.ws_url, fake.rest_url)
        settings.sources[0]["symbols"] = [*SYMBOLS, "NOPE"]
        pipeline = Pipeline(
            settings, plugins=[tickwire_finnhub, tickwire_sqlite], entry_points=False
        )
        async with pipeline:
            await fake.wait_for(lambda f: f.live and len(f.live[0].received) == 4)
            await fake.wait_subscribed(["AAPL", "OANDA:EUR_USD"])
            await fake.send_trades([{"s": "AAPL", "p": "1.5", "t": T0_MS, "v": 2}])
            with anyio.fail_after(10):
                while not written(tmp_path / "tw.db"):
                    await anyio.sleep(0.02)
        release(pipeline)
        assert len(fake.connections) == 1  # no reconnect: the errors are not fatal
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("provider.error") and "Subscribing to too many symbols" in m for m in messages
    )
    # The fake's "Invalid symbol" names no symbol (the documented text): a connection notice.
    assert any(m.startswith("provider.error") and "Invalid symbol" in m for m in messages)
    assert rows(tmp_path / "tw.db", "SELECT symbol, price, size FROM trades") == [
        ("AAPL", "1.5", "2")
    ]
