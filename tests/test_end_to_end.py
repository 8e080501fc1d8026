"""The whole data path with the real plugins: Coinbase fake → runner → SQLite, through the CLI."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import anyio
import pytest

from tickwire_coinbase.testing import FakeCoinbase

sys.path.insert(0, str(Path(__file__).parent))
from conftest import clean_env, tickwire_cmd

pytestmark = pytest.mark.anyio
S = 1_000_000_000


def config(tmp_path: Path, fake: FakeCoinbase, db: Path) -> Path:
    path = tmp_path / "tickwire.toml"
    path.write_text(f"""
[[sources]]
provider = "coinbase"
symbols  = ["BTC-USD", "ETH-USD"]
channels = ["trades", "quotes"]
ws_url   = "{fake.ws_url}"
rest_url = "{fake.rest_url}"

[candles]
intervals = ["1m"]

[bootstrap]
days = 0

[[sinks]]
type = "sqlite"
path = "{db}"
retention = "36500d"

[runner]
deadletter = "{tmp_path / "deadletter"}"
""")
    return path


async def start(*args: str, cwd: Path) -> anyio.abc.Process:
    """Start ``tickwire`` with its log in ``cwd / "stderr.log"`` (a pipe could fill and block)."""
    with (cwd / "stderr.log").open("wb") as log:
        return await anyio.open_process(
            tickwire_cmd("--log-format", "json", *args),
            cwd=cwd,
            env=clean_env(),
            stdout=log.fileno(),
            stderr=log.fileno(),
        )


async def test_run_writes_exact_rows_from_the_fake_exchange(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    async with FakeCoinbase(["BTC-USD", "ETH-USD"], seed=7) as fake:
        proc = await start(
            "run", "-c", str(config(tmp_path, fake, db)), "--duration", "8", cwd=tmp_path
        )
        async with proc:
            await fake.wait_subscribed(timeout=30)
            base = time.time_ns() // S * S
            sent = [
                await fake.trade("BTC-USD", "65000.10", "0.50000000", "buy", ts=base + 1_000),
                await fake.trade("BTC-USD", "64999.99", "0.01", "sell", ts=base + 2_000),
                await fake.trade("ETH-USD", "3100.5", "2", "buy", ts=base + 3_000),
            ]
            await proc.wait()
        assert proc.returncode == 0, (tmp_path / "stderr.log").read_text()
        last_matches = {
            p: [t for t in fake.trades(p) if t not in sent][-1] for p in ("BTC-USD", "ETH-USD")
        }
    rows = (
        sqlite3.connect(db)
        .execute(
            "SELECT provider, symbol, ts, price, size, side, trade_id FROM trades ORDER BY trade_id"
        )
        .fetchall()
    )
    expected = [
        ("coinbase", p, t.ts, str(t.price), str(t.size), t.side, str(t.trade_id))
        for p, t in last_matches.items()
    ]
    expected += [
        ("coinbase", p, t.ts, str(t.price), str(t.size), t.side, str(t.trade_id))
        for p, t in zip(["BTC-USD", "BTC-USD", "ETH-USD"], sent, strict=True)
    ]
    assert sorted(rows, key=lambda r: (r[1], int(r[6]))) == sorted(
        expected, key=lambda r: (r[1], int(r[6]))
    )
    assert ("coinbase", "BTC-USD", base + 1_000, "65000.10", "0.50000000", "buy") in [
        r[:6] for r in rows
    ]
    quotes = sqlite3.connect(db).execute("SELECT count(*) FROM quotes").fetchone()[0]
    assert quotes >= 3
    candles = (
        sqlite3.connect(db)
        .execute(
            "SELECT symbol, open, high, low, close, volume, trades FROM candles "
            "WHERE start = ? AND symbol = 'BTC-USD'",
            (base - base % (60 * S),),
        )
        .fetchall()
    )
    assert candles, "the 1m candle of the published trades was not written"
    (_, _open, h, _low, c, _volume, _count) = candles[0]
    assert Decimal(h) >= Decimal("65000.10")
    assert Decimal(c) == Decimal("64999.99")


async def test_sigterm_flushes_and_exits_cleanly(tmp_path: Path) -> None:
    db = tmp_path / "out.db"
    async with FakeCoinbase(["BTC-USD", "ETH-USD"], seed=3) as fake:
        proc = await start("run", "-c", str(config(tmp_path, fake, db)), cwd=tmp_path)
        async with proc:
            await fake.wait_subscribed(timeout=30)
            for i in range(50):
                await fake.trade("ETH-USD", f"3000.{i:02d}", "1")
            await anyio.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            with anyio.fail_after(20):
                await proc.wait()
    err = (tmp_path / "stderr.log").read_bytes()
    assert proc.returncode == 0
    assert b"Traceback" not in err
    assert b"pipeline.stop" in err
    count = (
        sqlite3.connect(db)
        .execute("SELECT count(*) FROM trades WHERE symbol = 'ETH-USD' AND price LIKE '3000.%'")
        .fetchone()[0]
    )
    assert count == 50


def test_default_run_without_network_retries_visibly(tmp_path: Path) -> None:
    result = subprocess.run(
        tickwire_cmd("--log-format", "text", "run", "--duration", "3"),
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "connection.failed source=coinbase#0 reason=dns" in result.stderr
    assert "cannot connect to wss://ws-feed.exchange.coinbase.com" in result.stderr
    assert result.stderr.count("connection.retry") >= 2
    assert (tmp_path / "tickwire.db").exists()


def test_plugins_lists_coinbase_and_sqlite_from_entry_points() -> None:
    out = subprocess.run(
        tickwire_cmd("plugins"), capture_output=True, text=True, env=clean_env(), timeout=60
    ).stdout
    assert "coinbase  (tickwire-coinbase" in out
    assert "provider coinbase:" in out
    assert "messages_per_second=8" in out
    assert "sqlite  (tickwire-sqlite" in out


def test_demo_runs_offline_into_sqlite(tmp_path: Path) -> None:
    db = tmp_path / "demo.db"
    result = subprocess.run(
        tickwire_cmd("--log-format", "text", "demo", "--duration", "5", "--db", str(db)),
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM trades").fetchone()[0] > 5
    assert con.execute("SELECT count(*) FROM quotes").fetchone()[0] > 5
    assert con.execute("SELECT count(*) FROM candles").fetchone()[0] >= 1
    assert "pipeline.status" in result.stderr


def test_bad_config_key_is_one_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[sources]]\nprovider = "coinbase"\nsymbols = ["BTC-USD"]\nwsurl = "x"\n')
    result = subprocess.run(
        tickwire_cmd("run", "-c", str(path)),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert result.returncode == 2
    assert "sources[0].wsurl: unknown key" in result.stderr
    assert "ws_url" in result.stderr
    assert "Traceback" not in result.stderr


def test_unwritable_database_path_is_named(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    path = tmp_path / "t.toml"
    path.write_text(f"""
[[sources]]
provider = "coinbase"
symbols = ["BTC-USD"]
ws_url = "ws://127.0.0.1:1"
[bootstrap]
days = 0
[[sinks]]
type = "sqlite"
path = "{blocker}/sub/t.db"
""")
    result = subprocess.run(
        tickwire_cmd("--log-format", "text", "run", "-c", str(path), "--duration", "2"),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert "Traceback" not in result.stderr
    assert "sink.retry" in result.stderr
    assert str(blocker) in result.stderr
