"""Rows/s into ``trades`` through the SQLite sink, next to a bare ``executemany`` floor.

Same machine, same run, same rows (Trade events over ``--symbols`` symbols, time-ordered),
batches of 5,000 (the runner's default ``batch_size``), a fresh file per writer in a temporary
folder, each file with the sink's pragmas (WAL, ``synchronous = NORMAL``, 64 MiB cache):

* floor: ``sqlite3`` ``executemany`` of a plain ``INSERT`` into a table of the sink's shape (same
  columns and types, the same unique index), one transaction per batch, rows built as tuples
  before the clock starts: what a hand-written writer of the same table costs, nothing else;
* floor, no index: the same into the table without its unique index (the upper bound);
* sink: ``SqliteSink.write_batch`` as the runner calls it, one batch at a time (events -> rows,
  Decimal -> text, ``INSERT ... ON CONFLICT DO NOTHING`` in one transaction, in its worker
  thread).

The writers run interleaved for ``--rounds`` rounds; the median of each is printed, with the
sink's share of the floor (target: at least 60 %)::

    uv run --all-packages python bench/sqlite_sink.py [--rows 200000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

import anyio

from tickwire.events import NS_PER_SECOND, Trade
from tickwire_sqlite import SqliteSettings, SqliteSink
from tickwire_sqlite.schema import MIGRATIONS

BATCH = 5000


def make_trades(n: int, symbols: int) -> list[Trade]:
    start = time.time_ns() - 2 * 86_400 * NS_PER_SECOND
    step = 2 * 86_400 * NS_PER_SECOND // n
    return [
        Trade(
            "bench",
            f"SYM{i % symbols}",
            start + i * step + i % 1000,
            start + i * step + 5_000_000,
            Decimal("100.25") + Decimal(i % 977) / 100,
            Decimal("0.00130000"),
            "buy" if i % 2 else "sell",
            str(10_000_000 + i),
        )
        for i in range(n)
    ]


def rows_of(trades: list[Trade]) -> list[tuple[object, ...]]:
    return [
        (t.provider, t.symbol, t.ts, t.received_ts, str(t.price), str(t.size), t.side, t.trade_id)
        for t in trades
    ]


def connect(path: Path) -> sqlite3.Connection:
    """A connection with the sink's own pragmas."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -65536")
    return conn


def floor(trades: list[Trade], path: Path, index: bool) -> float:
    conn = connect(path)
    try:
        table, key = MIGRATIONS[0][0], MIGRATIONS[0][1]  # the sink's trades table and its key
        assert "CREATE TABLE trades" in table and "trades_key" in key
        conn.execute(table)
        if index:
            conn.execute(key)
        batches = [rows_of(trades[i : i + BATCH]) for i in range(0, len(trades), BATCH)]
        sql = "INSERT INTO trades VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        started = time.perf_counter()
        for rows in batches:
            conn.execute("BEGIN")
            conn.executemany(sql, rows)
            conn.execute("COMMIT")
        return len(trades) / (time.perf_counter() - started)
    finally:
        conn.close()


async def through_sink(trades: list[Trade], path: Path) -> float:
    async with SqliteSink(SqliteSettings(path=path, retention=None)) as sink:
        batches = [trades[i : i + BATCH] for i in range(0, len(trades), BATCH)]
        started = time.perf_counter()
        for batch in batches:
            await sink.write_batch(batch)
        return len(trades) / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    trades = make_trades(args.rows, args.symbols)
    work = Path(tempfile.mkdtemp(prefix="tickwire-sqlite-bench-"))

    async def floor_indexed(t: list[Trade], p: Path) -> float:
        return floor(t, p, index=True)

    async def floor_plain(t: list[Trade], p: Path) -> float:
        return floor(t, p, index=False)

    methods: dict[str, tuple[str, Callable[[list[Trade], Path], Awaitable[float]]]] = {
        "floor": ("bare executemany, same table + unique index", floor_indexed),
        "no index": ("bare executemany, no index", floor_plain),
        "sink": ("SqliteSink.write_batch, 1 at a time", through_sink),
    }
    results: dict[str, list[float]] = {name: [] for name in methods}
    print(
        f"sqlite {sqlite3.sqlite_version}, {args.rows:,} trades over {args.symbols} symbols, "
        f"batches of {BATCH:,}, {args.rounds} interleaved rounds, files in {work}"
    )
    for round_ in range(args.rounds):
        for name, (_, method) in methods.items():
            path = work / f"{round_}-{name.replace(' ', '')}.db"
            try:
                results[name].append(await method(trades, path))
            finally:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)  # noqa: ASYNC240
        line = "  ".join(f"{n} {r[-1]:,.0f}" for n, r in results.items())
        print(f"  round {round_ + 1}: {line}")
    median = {name: statistics.median(values) for name, values in results.items()}
    for name, (label, _) in methods.items():
        spread = f"{min(results[name]):,.0f}..{max(results[name]):,.0f}"
        print(f"  {name:<8} {label:<46} median {median[name]:>9,.0f} rows/s  ({spread})")
    print(
        f"sink / floor = {median['sink'] / median['floor']:.0%} (target >= 60%); "
        f"sink / no-index floor = {median['sink'] / median['no index']:.0%}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    anyio.run(main, parser.parse_args())
