"""``tickwire gaps`` shows failed gaps with the reason the backfill gave up (issue 5)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio
import msgspec
import pytest

from tickwire.events import Gap
from tickwire_sqlite import SqliteSettings, SqliteSink

sys.path.insert(0, str(Path(__file__).parent))
from conftest import clean_env, tickwire_cmd

MIN = 60 * 1_000_000_000


@pytest.mark.anyio
async def test_the_gaps_command_lists_failed_gaps_with_their_reason(tmp_path: Path) -> None:
    db = tmp_path / "gaps.db"
    now = time.time_ns()
    start = now - now % MIN - 60 * MIN
    found = Gap("coinbase", "BTC-USD", "candles:1m", start, start + 5 * MIN, "candle")
    async with SqliteSink(SqliteSettings(path=db)) as sink:  # type: ignore[call-arg]
        await sink.write_batch(
            [
                msgspec.structs.replace(
                    found, status="failed", detail="HTTP 403: not on this plan"
                ),
                Gap("coinbase", "BTC-USD", "trades", start, start + MIN, "sequence"),
                Gap("coinbase", "ETH-USD", "trades", start, start + MIN, "sequence", "filled"),
            ]
        )
    config = tmp_path / "t.toml"
    config.write_text(f"""
[[sources]]
provider = "coinbase"
symbols = ["BTC-USD", "ETH-USD"]
ws_url = "ws://127.0.0.1:9"
rest_url = "http://127.0.0.1:9"
[[sinks]]
type = "sqlite"
path = "{db}"
""")
    proc = await anyio.run_process(
        tickwire_cmd("gaps", "-c", str(config), "--days", "1"), env=clean_env(), check=False
    )
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr.decode()
    header, *rows = out.splitlines()
    assert header.split()[-5:] == ["holes", "open", "filled", "empty", "failed"]
    btc = next(r for r in rows if r.startswith("coinbase") and "BTC-USD" in r and " 1m " in r)
    assert btc.split()[-4:] == ["1", "0", "0", "1"]  # open, filled, empty, failed
    assert "1 failed gaps, with the reason:" in out
    (line,) = [r for r in rows if "HTTP 403" in r]
    assert line.split()[:3] == ["coinbase", "BTC-USD", "candles:1m"]
    assert line.endswith("HTTP 403: not on this plan")
