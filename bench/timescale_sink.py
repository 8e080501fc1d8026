"""Rows/s into ``trades`` through the timescale sink, next to a bare asyncpg COPY floor.

Same machine, same run, same rows (Trade events: numeric price/size, timestamptz times, 1,000
symbols, time-ordered over the last two days), batches of 5,000:

* floor: ``copy_records_to_table`` into a plain, unindexed, unpartitioned table with the same
  columns and types (the fastest way asyncpg can put these rows into PostgreSQL);
* sink: ``TimescaleSink.write_batch`` as the runner calls it, one batch at a time (events ->
  rows, then in one transaction a COPY straight into the partitioned, uniquely keyed table in a
  savepoint; these rows are all new, so the ``ON CONFLICT`` fallback is never taken here);
* unnest: the upsert form the sink did not pick, ``INSERT ... SELECT FROM unnest($1::...[])
  ON CONFLICT DO NOTHING`` into an identical fresh sink schema (the replay test in the plugin
  covers the sink's own fallback, COPY into staging + ``INSERT ... ON CONFLICT``);
* staging: the sink's own upsert path (the fast path turned off): COPY into the temporary
  staging table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``;
* sink x2: two batches in flight on the sink's pool of two (two runner sinks, or two writers).

Run: ``cd /work/main && uv run --all-packages python bench/timescale_sink.py [--rows N]``
(``TICKWIRE_BENCH_PG_DSN`` overrides ``postgresql://postgres@127.0.0.1:5432/test``).
Prints each figure and the sink's share of the floor (target: at least 60 %).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from functools import partial

import asyncpg

from tickwire.events import NS_PER_SECOND, Trade
from tickwire_timescale import TimescaleSettings, TimescaleSink
from tickwire_timescale import sink as sink_module
from tickwire_timescale.schema import TRADES, day_of, ensure_partitions

DSN = os.environ.get("TICKWIRE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 5000


def make_trades(n: int) -> list[Trade]:
    start = time.time_ns() - 2 * 86_400 * NS_PER_SECOND
    step = 2 * 86_400 * NS_PER_SECOND // n
    return [
        Trade(
            "bench",
            f"SYM{i % 1000}",
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
        (t.provider, t.symbol, t.ts, t.received_ts, t.price, t.size, t.side, t.trade_id or "")
        for t in trades
    ]


async def warm_up(sink: TimescaleSink, trades: list[Trade]) -> None:
    """Make every day's partition and prepare the statements, outside the timed part."""
    async with sink.pool.acquire() as conn:
        days = {("trades", day_of(t.ts)) for t in trades}
        await ensure_partitions(conn, sink.schema, days)
    await sink.write_batch(trades[:1])


async def timed(run: Callable[[], Awaitable[None]], n: int) -> float:
    started = time.perf_counter()
    await run()
    return n / (time.perf_counter() - started)


async def floor(trades: list[Trade], schema: str) -> float:
    sink = TimescaleSink(TimescaleSettings(dsn=DSN, schema=schema, pool_size=1))  # type: ignore[arg-type]
    await sink.open()  # only for its connection setup (ns <-> timestamptz codec)
    try:
        async with sink.pool.acquire() as conn:
            await conn.execute(
                f"CREATE TABLE {schema}.floor (provider text, symbol text, ts timestamptz,"
                " received_ts timestamptz, price numeric, size numeric, side text,"
                " trade_id text)"
            )

            # Records built before the clock starts: the floor is the COPY alone.
            batches = [rows_of(trades[i : i + BATCH]) for i in range(0, len(trades), BATCH)]

            async def run() -> None:
                for records in batches:
                    await conn.copy_records_to_table(
                        "floor", schema_name=schema, records=records, columns=TRADES.column_names
                    )

            return await timed(run, len(trades))
    finally:
        await sink.aclose()


async def through_sink(trades: list[Trade], schema: str, parallel: int = 1) -> float:
    settings = TimescaleSettings(dsn=DSN, schema=schema, pool_size=max(parallel, 1))  # type: ignore[arg-type]
    async with TimescaleSink(settings) as sink:
        await warm_up(sink, trades)

        async def run() -> None:
            batches = [trades[i : i + BATCH] for i in range(1, len(trades), BATCH)]
            for i in range(0, len(batches), parallel):
                await asyncio.gather(*(sink.write_batch(b) for b in batches[i : i + parallel]))

        return await timed(run, len(trades) - 1)


async def staging(trades: list[Trade], schema: str) -> float:
    """The sink with its COPY-first fast path turned off: COPY into staging + ON CONFLICT."""
    saved = sink_module._OPTIMISTIC
    sink_module._OPTIMISTIC = frozenset()
    try:
        return await through_sink(trades, schema)
    finally:
        sink_module._OPTIMISTIC = saved


async def unnest(trades: list[Trade], schema: str) -> float:
    settings = TimescaleSettings(dsn=DSN, schema=schema, pool_size=1)  # type: ignore[arg-type]
    async with TimescaleSink(settings) as sink:
        await warm_up(sink, trades)
        sql = (
            f"INSERT INTO {schema}.trades ({TRADES.column_list}) SELECT * FROM unnest("
            "$1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::numeric[],"
            " $6::numeric[], $7::text[], $8::text[])"
            f" ON CONFLICT ({TRADES.key_list}) DO NOTHING"
        )
        async with sink.pool.acquire() as conn:

            async def run() -> None:
                for i in range(1, len(trades), BATCH):
                    columns = list(zip(*rows_of(trades[i : i + BATCH]), strict=True))
                    async with conn.transaction():
                        await conn.execute(sql, *columns)

            return await timed(run, len(trades) - 1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    trades = make_trades(args.rows)
    tag = uuid.uuid4().hex[:8]
    methods: dict[str, tuple[str, Callable[[list[Trade], str], Awaitable[float]]]] = {
        "floor": ("bare COPY, plain table, no index", floor),
        "sink": ("TimescaleSink.write_batch, 1 at a time", through_sink),
        "staging": ("COPY to staging + ON CONFLICT (upsert)", staging),
        "unnest": ("unnest + ON CONFLICT (upsert)", unnest),
        "sink x2": ("two batches in flight (pool of 2)", partial(through_sink, parallel=2)),
    }
    results: dict[str, list[float]] = {name: [] for name in methods}
    admin = await asyncpg.connect(DSN)
    print(f"{args.rows:,} trades, batches of {BATCH:,}, {args.rounds} interleaved rounds, {DSN}")
    try:
        for round_ in range(args.rounds):
            for name, (_, method) in methods.items():
                schema = f"tw_bench_{tag}_{round_}_{name.replace(' ', '')}"
                try:
                    results[name].append(await method(trades, schema))
                finally:
                    await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            line = "  ".join(f"{n} {r[-1]:,.0f}" for n, r in results.items())
            print(f"  round {round_ + 1}: {line}")
    finally:
        await admin.close()
    median = {name: statistics.median(values) for name, values in results.items()}
    for name, (label, _) in methods.items():
        spread = f"{min(results[name]):,.0f}..{max(results[name]):,.0f}"
        print(f"  {name:<8} {label:<40} median {median[name]:>9,.0f} rows/s  ({spread})")
    ref = median["floor"]
    print(
        f"sink / floor = {median['sink'] / ref:.0%} (target >= 60%); "
        f"staging / floor = {median['staging'] / ref:.0%}; "
        f"unnest / floor = {median['unnest'] / ref:.0%}; "
        f"sink x2 / floor = {median['sink x2'] / ref:.0%}"
    )


if __name__ == "__main__":
    asyncio.run(main())
