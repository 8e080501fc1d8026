"""Rows/s into ``trades`` through the timescale sink, next to a bare asyncpg COPY floor.

Same machine, same run, same trades (numeric price/size, timestamptz times, 1,000 symbols,
time-ordered over the last two days; prices on a 0.01 grid that repeat as real prices do,
sizes with 8 decimals drawn from five million values, so nearly every size is new), in
batches of 5,000. The methods are **interleaved batch by batch** (batch 1 through every method,
then batch 2, ..., the order rotating), so a burst of load from other processes on the machine
hits all of them alike; each method writes into its own fresh schema every round.

* floor: a plain asyncpg connection (asyncpg's own codecs) doing ``copy_records_to_table`` of
  ready-made records (``datetime`` and ``Decimal``, built before the clock starts) into a plain
  table with the same columns (``CREATE TABLE ... (LIKE trades)``: same types, collations and
  ``NOT NULL``; no index, no partitions, no transaction around it). The bare COPY floor.
* floor+codecs: the same bare COPY on a connection set up as the sink's are (its ``timestamptz``
  codec for integer nanoseconds and its ``numeric`` codec, :mod:`tickwire_timescale.codec`), of
  ready-made records (ints and ``Decimal``): the fastest COPY of these rows we know, a stricter
  reference than the issue's floor.
* sink: ``TimescaleSink.write_batch(events)`` as the runner calls it, one batch at a time,
  default settings: the events become rows (inside the timing), then in one transaction a COPY
  straight into the partitioned table with its unique per-symbol key and BRIN index (these rows
  are all new, so the ``ON CONFLICT`` fallback is never taken here).
* with ``--upserts``: staging (the sink's idempotent fallback: COPY into the temporary staging
  table, then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING``) and unnest (``INSERT ... SELECT
  FROM unnest($1::...[]) ON CONFLICT DO NOTHING``), on one connection each.

Run: ``cd /work/main && uv run --all-packages python bench/timescale_sink.py [--rows N]
[--rounds R] [--upserts]`` (``TICKWIRE_BENCH_PG_DSN`` overrides
``postgresql://postgres@127.0.0.1:5432/test``). Prints each round, rows/s per method over all
rounds, and the sink's share of the floor (target: at least 60 %).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from tickwire.events import NS_PER_SECOND, Trade
from tickwire_timescale import TimescaleSettings, TimescaleSink
from tickwire_timescale import sink as sink_module
from tickwire_timescale.schema import TRADES, day_of, ensure_partitions

DSN = os.environ.get("TICKWIRE_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
BATCH = 5000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_trades(n: int, symbols: int = 1000, seed: int = 7) -> list[Trade]:
    rng = random.Random(seed)
    start = time.time_ns() - 2 * 86_400 * NS_PER_SECOND
    step = 2 * 86_400 * NS_PER_SECOND // n
    cents = [rng.randint(1_000, 5_000_000) for _ in range(symbols)]
    out = []
    for i in range(n):
        k = i % symbols
        cents[k] = max(1, cents[k] + rng.randint(-3, 3))
        out.append(
            Trade(
                "bench",
                f"SYM{k}",
                start + i * step + k,
                start + i * step + 5_000_000,
                Decimal(cents[k]).scaleb(-2),
                Decimal(rng.randint(1, 5_000_000)).scaleb(-8),
                "buy" if i % 2 else "sell",
                str(10_000_000 + i),
            )
        )
    return out


def _dt(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def records_of(trades: Sequence[Trade]) -> list[tuple[object, ...]]:
    """Records for asyncpg's own codecs (what a bare COPY would be handed)."""
    return [
        (t.provider, t.symbol, _dt(t.ts), _dt(t.received_ts), t.price, t.size, t.side, t.trade_id)
        for t in trades
    ]


Writer = Callable[[int], Awaitable[None]]


class Method:
    """One way of writing the batches: ``setup`` (untimed), ``write(i)`` (timed), ``close``."""

    conn: Any = None
    sink: TimescaleSink | None = None

    def __init__(self, label: str) -> None:
        self.label = label
        self.seconds = 0.0
        self.round_seconds = 0.0

    async def setup(self, schema: str, batches: list[list[Trade]]) -> None:
        raise NotImplementedError

    async def write(self, i: int) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class Floor(Method):
    async def setup(self, schema: str, batches: list[list[Trade]]) -> None:
        self.schema = schema
        self.conn = await asyncpg.connect(DSN)
        # The sink creates the schema and trades; the floor's table copies trades' columns.
        async with TimescaleSink(TimescaleSettings(dsn=DSN, schema=schema)):  # type: ignore[call-arg]
            pass
        await self.conn.execute(f"CREATE TABLE {schema}.floor (LIKE {schema}.trades)")
        self.records = [records_of(b) for b in batches]
        await self.conn.copy_records_to_table(
            "floor", schema_name=schema, records=self.records[0][:1], columns=TRADES.column_names
        )

    async def write(self, i: int) -> None:
        await self.conn.copy_records_to_table(
            "floor", schema_name=self.schema, records=self.records[i], columns=TRADES.column_names
        )

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        self.conn = None


class FloorCodecs(Floor):
    """The floor on a connection set up like the sink's (ns timestamps, its numeric codec)."""

    async def setup(self, schema: str, batches: list[list[Trade]]) -> None:
        self.schema = schema
        self.sink = TimescaleSink(TimescaleSettings(dsn=DSN, schema=schema, pool_size=1))  # type: ignore[call-arg]
        await self.sink.open()
        self.conn = await self.sink.pool.acquire()
        await self.conn.execute(f"CREATE TABLE {schema}.floor (LIKE {schema}.trades)")
        self.records = [
            [
                (t.provider, t.symbol, t.ts, t.received_ts, t.price, t.size, t.side, t.trade_id)
                for t in b
            ]
            for b in batches
        ]
        await self.write(0)
        await self.conn.execute(f"TRUNCATE {schema}.floor")

    async def close(self) -> None:
        if self.sink is not None:
            if self.conn is not None:
                await self.sink.pool.release(self.conn)
            await self.sink.aclose()
        self.conn = self.sink = None


class ThroughSink(Method):
    async def setup(self, schema: str, batches: list[list[Trade]]) -> None:
        settings = TimescaleSettings(dsn=DSN, schema=schema)  # type: ignore[call-arg]
        self.sink = TimescaleSink(settings)
        await self.sink.open()
        async with self.sink.pool.acquire() as conn:
            days = {("trades", day_of(t.ts)) for b in batches for t in b}
            await ensure_partitions(conn, schema, days)
        self.sink._partitions |= days
        await self.sink.write_batch(batches[0][-1:])  # prepare the statements, untimed
        self.batches = batches

    async def write(self, i: int) -> None:
        batch = self.batches[i]
        assert self.sink is not None
        await self.sink.write_batch(batch[:-1] if i == 0 else batch)

    async def close(self) -> None:
        if self.sink is not None:
            await self.sink.aclose()
        self.sink = None


class Staging(ThroughSink):
    async def write(self, i: int) -> None:
        saved = sink_module._OPTIMISTIC
        sink_module._OPTIMISTIC = frozenset()
        try:
            await super().write(i)
        finally:
            sink_module._OPTIMISTIC = saved


class Unnest(ThroughSink):
    async def setup(self, schema: str, batches: list[list[Trade]]) -> None:
        await super().setup(schema, batches)
        self.sql = (
            f"INSERT INTO {schema}.trades ({TRADES.column_list}) SELECT * FROM unnest("
            "$1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::numeric[],"
            " $6::numeric[], $7::text[], $8::text[])"
            f" ON CONFLICT ({TRADES.key_list}) DO NOTHING"
        )

    async def write(self, i: int) -> None:
        batch = self.batches[i][:-1] if i == 0 else self.batches[i]
        rows = [
            (t.provider, t.symbol, t.ts, t.received_ts, t.price, t.size, t.side, t.trade_id)
            for t in batch
        ]
        assert self.sink is not None
        async with self.sink.pool.acquire() as conn, conn.transaction():
            await conn.execute(self.sql, *zip(*rows, strict=True))


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upserts", action="store_true", help="also the two upsert forms")
    args = parser.parse_args()
    trades = make_trades(args.rows)
    batches = [trades[i : i + BATCH] for i in range(0, len(trades), BATCH)]
    tag = uuid.uuid4().hex[:8]
    methods: dict[str, Method] = {
        "floor": Floor("bare asyncpg COPY, plain table, no index"),
        "floor+codecs": FloorCodecs("the same COPY, with the sink's codecs"),
        "sink": ThroughSink("TimescaleSink.write_batch, one at a time"),
    }
    if args.upserts:
        methods["staging"] = Staging("COPY to staging + ON CONFLICT")
        methods["unnest"] = Unnest("unnest + ON CONFLICT")
    names = list(methods)
    admin = await asyncpg.connect(DSN)
    print(
        f"{args.rows:,} trades, batches of {BATCH:,}, {args.rounds} rounds,"
        f" interleaved batch by batch, {DSN}"
    )
    try:
        for round_ in range(args.rounds):
            schemas = {n: f"tw_bench_{tag}_{round_}_{k}" for k, n in enumerate(names)}
            try:
                for name, method in methods.items():
                    await method.setup(schemas[name], batches)
                    method.round_seconds = 0.0
                for i in range(len(batches)):
                    k = (i + round_) % len(names)
                    for name in names[k:] + names[:k]:
                        method = methods[name]
                        started = time.perf_counter()
                        await method.write(i)
                        method.round_seconds += time.perf_counter() - started
            finally:
                for method in methods.values():
                    await method.close()
                for schema in schemas.values():
                    await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            floor = methods["floor"].round_seconds
            line = "  ".join(
                f"{n} {args.rows / m.round_seconds:,.0f} ({floor / m.round_seconds:.0%})"
                for n, m in methods.items()
            )
            print(f"  round {round_ + 1}: {line}")
            for method in methods.values():
                method.seconds += method.round_seconds
    finally:
        await admin.close()
    total = args.rows * args.rounds
    floor = methods["floor"].seconds
    for name, method in methods.items():
        print(
            f"  {name:<12} {method.label:<42} {total / method.seconds:>9,.0f} rows/s"
            f"  {floor / method.seconds:>4.0%} of floor"
        )
    sink = methods["sink"].seconds
    print(
        f"sink / floor = {floor / sink:.0%} (target >= 60%);"
        f" sink / floor+codecs = {methods['floor+codecs'].seconds / sink:.0%}"
    )


if __name__ == "__main__":
    asyncio.run(main())
