"""Rows per second for 100k trades written in batches of 5000 (fresh file, WAL, synchronous=normal).

Run: ``uv run --all-packages python plugins/sinks/sqlite/bench/write_rate.py [--full]``
"""

from __future__ import annotations

import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import anyio

from tickwire.events import Trade
from tickwire_sqlite import SqliteSettings, SqliteSink

N, BATCH = 100_000, 5_000
T0 = 1_700_000_000_000_000_000


async def main(synchronous: str) -> None:
    trades = [
        Trade(
            "coinbase",
            f"SYM-{i % 10}",
            T0 + i * 1000,
            T0 + i * 1000 + 5,
            Decimal("10101.80000000") + i,
            Decimal("0.00123400"),
            "buy" if i % 2 else "sell",
            str(10**8 + i),
        )
        for i in range(N)
    ]
    with tempfile.TemporaryDirectory() as folder:
        settings = SqliteSettings(path=Path(folder) / "bench.db", synchronous=synchronous)  # type: ignore[arg-type]
        async with SqliteSink(settings) as sink:
            for label in ("new rows", "replay (all duplicates)"):
                started = time.perf_counter()
                for i in range(0, N, BATCH):
                    await sink.write_batch(trades[i : i + BATCH])
                elapsed = time.perf_counter() - started
                print(f"synchronous={synchronous} {label}: {N / elapsed:,.0f} rows/s")


if __name__ == "__main__":
    anyio.run(main, "full" if "--full" in sys.argv else "normal")
