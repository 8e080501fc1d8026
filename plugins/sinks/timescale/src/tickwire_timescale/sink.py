"""The PostgreSQL / TimescaleDB sink: an asyncpg pool, one transaction per batch.

Ingest path, per batch: the events are sorted into rows per table (deduplicated within the
batch where a later write replaces an earlier one), the daily partitions the rows need are
created if missing (plain PostgreSQL; a short transaction of its own), then in **one
transaction**, per table:

* trades and quotes (the high-rate tables, whose rows are nearly always new) are first
  ``COPY``'d (binary) straight into the table. If any key is stored already (a replay, a
  retried batch), the unique index refuses the COPY, the transaction is rolled back and redone
  with that table on the next step (no savepoint: fewer round trips per batch). A batch of
  one such table alone (the live stream's usual batch) is a single ``COPY`` outside an explicit
  transaction: the statement is its own transaction, all or nothing, committed before it
  returns, without the ``BEGIN`` and ``COMMIT`` round trips (5 socket writes per batch become 3);
* otherwise (and always for candles, gaps and books) the rows are ``COPY``'d into the
  connection's temporary staging table and moved with ``INSERT ... SELECT ... ON CONFLICT``.

Every write is idempotent, so the runner may retry a failed batch (or a batch whose commit
reached the server but whose answer was lost) without creating a duplicate row.

Why: ``INSERT ... ON CONFLICT`` searches the unique index before each insert; a plain COPY with
the same index measured about 1.3-1.7x faster end to end here. Of the two upsert forms, COPY +
staging measured faster than ``INSERT ... SELECT FROM unnest($1::timestamptz[], ...)`` on this
schema (``bench/timescale_sink.py`` prints both) and carries ``numeric[]`` book levels, which
``unnest`` cannot. Costs: a replayed batch pays for the refused COPY first (its dead rows are
vacuumed as usual), and the staging table is session-scoped, so the sink does not work behind a
transaction-pooling pgbouncer (use session pooling, or connect to PostgreSQL directly).

Times: asyncpg is told to exchange ``timestamptz`` as integer nanoseconds (the events' unit)
with a ``format='tuple'`` codec on the sink's own connections; PostgreSQL keeps microseconds,
so values are floored to the microsecond on the way in. ``numeric`` goes through the sink's own
binary codec (:mod:`tickwire_timescale.codec`): exact, scale kept, and several times cheaper
per value than asyncpg's for the prices and sizes that repeat (``bench/timescale_sink.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, get_args

import asyncpg

from tickwire.events import (
    BookSnapshot,
    Candle,
    Event,
    Gap,
    GapStatus,
    Quote,
    Trade,
    candle_replaces,
)
from tickwire_timescale import codec, schema, timescaledb
from tickwire_timescale.schema import (
    BOOK_SNAPSHOTS,
    CANDLES,
    GAPS,
    NO_TRADE_ID,
    NS_PER_DAY,
    QUOTES,
    TRADES,
    Backend,
    Options,
    Table,
)
from tickwire_timescale.settings import TimescaleSettings

if TYPE_CHECKING:
    from tickwire_timescale.schema import Conn

_GAP_STATUSES: tuple[str, ...] = get_args(GapStatus)

#: Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
_PG_EPOCH_US = 946_684_800 * 1_000_000
_UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _encode_ts(value: Any) -> tuple[int]:
    if type(value) is int:
        return (value // 1000 - _PG_EPOCH_US,)
    if isinstance(value, datetime):
        delta = value - _UNIX_EPOCH
        us = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return (us - _PG_EPOCH_US,)
    raise TypeError(f"expected integer nanoseconds or a datetime, got {type(value).__name__}")


def _decode_ts(value: tuple[int]) -> int:
    return (value[0] + _PG_EPOCH_US) * 1000


def _us(ns: int) -> int:
    return ns // 1000


def _ceil_us(ns: int) -> int:
    return -(-ns // 1000) * 1000


def _td_ns(value: timedelta) -> int:
    """A timedelta as integer nanoseconds, exactly (36500 days stays exact)."""
    return ((value.days * 86_400 + value.seconds) * 1_000_000 + value.microseconds) * 1000


def _upsert_sql(s: str, table: Table, update: str | None) -> str:
    target = f"INSERT INTO {s}.{table.name} AS cur ({table.column_list})"
    select = f"SELECT {table.column_list} FROM pg_temp.{table.stage}"
    conflict = f"ON CONFLICT ({table.key_list}) DO " + ("NOTHING" if update is None else update)
    return f"{target}\n{select}\n{conflict}"


def _set_all(table: Table) -> str:
    cols = [c for c in table.column_names if c not in table.key]
    return "UPDATE SET " + ", ".join(
        f"{schema.quote(c)} = EXCLUDED.{schema.quote(c)}" for c in cols
    )


# A later write of the same candle updates it (a forming candle becomes the closed one), by
# ``tickwire.events.candle_replaces``: a candle tickwire built never replaces the provider's own
# (streamed or backfilled) one, nor a built one that counts more trades (a builder restarted
# mid-bucket knows only part of it).
_CANDLE_RULE = (
    " WHERE EXCLUDED.source <> 'built' OR (cur.source = 'built' AND (EXCLUDED.trades IS NULL"
    " OR cur.trades IS NULL OR EXCLUDED.trades >= cur.trades))"
)

# A gap is one row per (provider, symbol, kind, start); a later write takes the new end and
# reason. Its status: a resolution (filled/empty/failed) always applies; a gap found again
# (open) keeps what is known about it (an empty gap is never fetched again, a failed one keeps
# its reason) unless it grew, because then its new part is missing. ``detail`` goes with the
# status. The same rule as the SQLite sink.
_GAP_UPDATE = (
    'UPDATE SET "end" = EXCLUDED."end", reason = EXCLUDED.reason, status = CASE'
    " WHEN EXCLUDED.status <> 'open' THEN EXCLUDED.status"
    ' WHEN EXCLUDED."end" > cur."end" THEN \'open\''
    " ELSE cur.status END, detail = CASE"
    ' WHEN EXCLUDED.status <> \'open\' OR EXCLUDED."end" > cur."end" THEN EXCLUDED.detail'
    " ELSE cur.detail END"
)


#: Tables written COPY-first (see ``TimescaleSink._write``): the high-rate ones, whose rows
#: are nearly always new. A plain COPY with the unique index measured about twice as fast on the
#: server as ``INSERT ... ON CONFLICT`` (which searches the index before every insert).
_OPTIMISTIC = frozenset({"trades", "quotes"})


class TimescaleSinkError(RuntimeError):
    """A batch or the schema could not be written; the message says why (never the DSN)."""


class TimescaleSink:
    """Stores trades, quotes, candles, gaps (and book snapshots with ``book = true``) in
    PostgreSQL, on TimescaleDB hypertables when the extension is installed.

    Implements :class:`tickwire.protocols.Sink`, :class:`~tickwire.protocols.RetentionSink`
    and :class:`~tickwire.protocols.CoverageSink`. It is also an async context manager
    (``open`` on enter, ``aclose`` on exit).
    """

    def __init__(self, settings: TimescaleSettings) -> None:
        self.settings = settings
        self.schema = settings.db_schema
        self.backend: Backend | None = None
        self._pool: asyncpg.Pool | None = None
        self._tables: tuple[Table, ...] = (TRADES, QUOTES, CANDLES, GAPS) + (
            (BOOK_SNAPSHOTS,) if settings.book else ()
        )
        self._options = Options(
            book=settings.book,
            retention=settings.retention,
            chunk_interval=settings.chunk_interval,
            compress_after=settings.compress_after,
        )
        self._retention_ns = None if settings.retention is None else _td_ns(settings.retention)
        #: (table, day) partitions known to exist (plain PostgreSQL only).
        self._partitions: set[tuple[str, int]] = set()
        s = self.schema
        self._sql = {
            "trades": _upsert_sql(s, TRADES, None),
            "quotes": _upsert_sql(s, QUOTES, _set_all(QUOTES)),
            "candles": _upsert_sql(s, CANDLES, _set_all(CANDLES) + _CANDLE_RULE),
            "gaps": _upsert_sql(s, GAPS, _GAP_UPDATE),
            "book_snapshots": _upsert_sql(s, BOOK_SNAPSHOTS, _set_all(BOOK_SNAPSHOTS)),
        }

    # ---- lifecycle ---------------------------------------------------------------------------

    async def _init_connection(self, conn: Conn) -> None:
        await conn.set_type_codec(
            "timestamptz",
            schema="pg_catalog",
            encoder=_encode_ts,
            decoder=_decode_ts,
            format="tuple",
        )
        await conn.set_type_codec(
            "numeric",
            schema="pg_catalog",
            encoder=codec.encode,
            decoder=codec.decode,
            format="binary",
        )
        for table in self._tables:
            await conn.execute(schema.stage_ddl(table))

    @staticmethod
    async def _release(conn: Conn) -> None:
        """A connection goes back to the pool as it is: no ``RESET ALL`` round trip per batch.

        asyncpg rolls back a transaction left open before this runs; the sink keeps no other
        session state (its locks are transaction-scoped, its settings ``SET LOCAL``).
        """

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool (after :meth:`open`); its connections exchange times as ns.

        Connections are not reset when released (see :meth:`_release`): a caller that changes
        session state on one (``SET``, ``LISTEN``, session advisory locks) must undo it.
        """
        if self._pool is None:
            raise TimescaleSinkError("the sink is not open: call open() first")
        return self._pool

    async def open(self) -> None:
        """Connect (a pool of ``pool_size``), migrate the schema, create partitions ahead.

        Raises on an unreachable server or a failed migration; the runner retries ``open``
        with backoff.
        """
        if self._pool is not None:
            return
        if self.settings.timescaledb == "on":
            timescaledb.check_retention(self._options)
        pool = await asyncpg.create_pool(
            self.settings.dsn.get_secret_value(),
            min_size=1,
            max_size=self.settings.pool_size,
            init=self._init_connection,
            reset=self._release,
            timeout=self.settings.connect_timeout.total_seconds(),
            command_timeout=self.settings.command_timeout.total_seconds(),
        )
        try:
            async with pool.acquire() as conn:
                self.backend = await schema.migrate(
                    conn, self.schema, self.settings.timescaledb, self._options
                )
                if self.backend == "postgres":
                    for table in self._partitioned():
                        for day in await schema.list_partitions(conn, self.schema, table.name):
                            self._partitions.add((table.name, day))
                    await self._ensure(conn, self._ahead(time.time_ns()))
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def aclose(self) -> None:
        """Close the pool (every batch is already committed)."""
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        await pool.close()

    async def __aenter__(self) -> TimescaleSink:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---- partitions --------------------------------------------------------------------------

    def _partitioned(self) -> list[Table]:
        return [t for t in self._tables if t.partitioned]

    def _ahead(self, now_ns: int) -> set[tuple[str, int]]:
        today = schema.day_of(now_ns)
        return {
            (table.name, today + i)
            for table in self._partitioned()
            for i in range(self.settings.premake_days + 1)
        }

    async def _ensure(self, conn: Conn, wanted: Iterable[tuple[str, int]]) -> None:
        missing = set(wanted) - self._partitions
        if missing:
            await schema.ensure_partitions(conn, self.schema, missing)
            self._partitions |= missing

    # ---- the sink contract -------------------------------------------------------------------

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Write ``events`` in one transaction (all or nothing), idempotently.

        ``BookDelta`` is never stored; ``BookSnapshot`` only with ``book = true``. Raises if the
        transaction fails (nothing of the batch is kept); the runner retries.
        """
        if not events:
            return
        pool = self.pool
        trades: list[tuple[Any, ...]] = []
        trade_days: set[int] = set()
        quotes: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        candles: dict[tuple[str, str, str, int], tuple[Any, ...]] = {}
        candle_events: dict[tuple[str, str, str, int], Candle] = {}
        gaps: dict[tuple[str, str, str, int], tuple[Any, ...]] = {}
        books: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        book = self.settings.book
        for e in events:
            kind = type(e)
            if kind is Trade:
                t: Trade = e  # type: ignore[assignment]
                trades.append(
                    (
                        t.provider,
                        t.symbol,
                        t.ts,
                        t.received_ts,
                        t.price,
                        t.size,
                        t.side,
                        NO_TRADE_ID if t.trade_id is None else t.trade_id,
                    )
                )
                trade_days.add(t.ts // NS_PER_DAY)
            elif kind is Quote:
                q: Quote = e  # type: ignore[assignment]
                quotes[(q.provider, q.symbol, _us(q.ts))] = (
                    q.provider,
                    q.symbol,
                    q.ts,
                    q.received_ts,
                    q.bid,
                    q.bid_size,
                    q.ask,
                    q.ask_size,
                )
            elif kind is Candle:
                c: Candle = e  # type: ignore[assignment]
                ckey = (c.provider, c.symbol, c.interval, _us(c.start))
                prior = candle_events.get(ckey)
                if prior is not None and not candle_replaces(c, prior):
                    continue  # the same rule as the upsert
                candle_events[ckey] = c
                candles[ckey] = (
                    c.provider,
                    c.symbol,
                    c.interval,
                    c.start,
                    c.open,
                    c.high,
                    c.low,
                    c.close,
                    c.volume,
                    c.trades,
                    c.basis,
                    c.closed,
                    c.source,
                )
            elif kind is Gap:
                g: Gap = e  # type: ignore[assignment]
                gkey = (g.provider, g.symbol, g.kind, _us(g.start))
                status: str = g.status
                detail = g.detail
                was = gaps.get(gkey)
                if was is not None and status == "open" and _us(g.end) <= _us(was[4]):
                    status, detail = was[6], was[7]
                gaps[gkey] = (
                    g.provider,
                    g.symbol,
                    g.kind,
                    g.start,
                    g.end,
                    g.reason,
                    status,
                    detail,
                )
            elif kind is BookSnapshot and book:
                b: BookSnapshot = e  # type: ignore[assignment]
                books[(b.provider, b.symbol, _us(b.ts))] = (
                    b.provider,
                    b.symbol,
                    b.ts,
                    b.received_ts,
                    [[p, s] for p, s in b.bids],
                    [[p, s] for p, s in b.asks],
                    b.sequence,
                )
        work: list[tuple[Table, Sequence[tuple[Any, ...]]]] = [
            (table, rows)
            for table, rows in (
                (TRADES, trades),
                (QUOTES, list(quotes.values())),
                (CANDLES, list(candles.values())),
                (GAPS, list(gaps.values())),
                (BOOK_SNAPSHOTS, list(books.values())),
            )
            if rows
        ]
        if not work:
            return
        if self.backend == "postgres":
            wanted = {("trades", d) for d in trade_days}
            for table, rows in work:
                if table.partitioned and table is not TRADES:
                    col = 3 if table is CANDLES else 2
                    wanted.update((table.name, row[col] // NS_PER_DAY) for row in rows)
            if not wanted <= self._partitions:
                async with pool.acquire() as conn:
                    await self._ensure(conn, wanted)
        await self._write(work)

    async def _write(self, work: list[tuple[Table, Sequence[tuple[Any, ...]]]]) -> None:
        """Write ``work`` in one transaction on one pooled connection.

        Trades and quotes (rows that are new on the live stream) are ``COPY``'d straight into
        their table: no staging table and no speculative insertion. A key already stored (a
        replay, a retried batch, a duplicate in the batch) fails that COPY with a unique
        violation, which aborts the transaction; it is redone with that table's rows on the
        ``ON CONFLICT`` path. No savepoint around the optimistic COPY: two round trips fewer
        per batch on the live path, for a redone transaction on a replay.
        """
        upsert: set[str] = set()
        async with self.pool.acquire() as conn:
            if len(work) == 1 and work[0][0].name in _OPTIMISTIC:
                # One table of new rows (the live stream's usual batch): a single COPY is its
                # own transaction, so no BEGIN and COMMIT round trips; it commits (durably, as
                # the server's synchronous_commit says) before it returns. A stored key refuses
                # the whole COPY: then the transaction below upserts it.
                table, rows = work[0]
                try:
                    await conn.copy_records_to_table(
                        table.name,
                        records=rows,
                        columns=table.column_names,
                        schema_name=self.schema,
                    )
                    return
                except asyncpg.UniqueViolationError:
                    upsert.add(table.name)
                except asyncpg.CheckViolationError as exc:
                    self._partitions.clear()
                    raise TimescaleSinkError(f"batch not written: {exc}") from exc
            while True:
                optimistic: str | None = None
                try:
                    async with conn.transaction():
                        for table, rows in work:
                            if table.name in _OPTIMISTIC and table.name not in upsert:
                                optimistic = table.name
                                await conn.copy_records_to_table(
                                    table.name,
                                    records=rows,
                                    columns=table.column_names,
                                    schema_name=self.schema,
                                )
                                optimistic = None
                                continue
                            await conn.copy_records_to_table(
                                table.stage,
                                records=rows,
                                columns=table.column_names,
                                schema_name="pg_temp",
                            )
                            await conn.execute(self._sql[table.name])
                    return
                except asyncpg.UniqueViolationError:
                    if optimistic is None:
                        raise
                    upsert.add(optimistic)
                except asyncpg.CheckViolationError as exc:
                    # "no partition of relation ... found for row": a partition this process
                    # knew of was dropped (retention in another process). Forget them all; the
                    # retry recreates what it needs.
                    self._partitions.clear()
                    raise TimescaleSinkError(f"batch not written: {exc}") from exc

    async def enforce_retention(self, now_ns: int) -> int:
        """Drop what is older than ``now_ns - retention`` by event time; return rows removed.

        Plain PostgreSQL: every daily partition whose whole day ends at or before the cutoff
        is dropped (its rows counted first), so up to a day more than the retention is kept;
        gaps whose ``end`` is before the cutoff are deleted. It also creates the partitions
        for the coming ``premake_days``. TimescaleDB: ``drop_chunks`` on each hypertable (the
        database's own retention policy does the same on its schedule); returns chunks dropped.
        ``retention = None`` removes nothing.
        """
        pool = self.pool
        removed = 0
        async with pool.acquire() as conn:
            if self.backend == "postgres":
                await self._ensure(conn, self._ahead(now_ns))
            if self._retention_ns is None:
                return 0
            cutoff = now_ns - self._retention_ns
            if self.backend == "timescaledb":
                for table in self._partitioned():
                    sql = timescaledb.drop_chunks_statement(self.schema, table)
                    removed += int(await conn.fetchval(sql, max(cutoff, -(2**62))))
            else:
                for table in self._partitioned():
                    for day in await schema.list_partitions(conn, self.schema, table.name):
                        if (day + 1) * NS_PER_DAY > cutoff:
                            break
                        removed += await self._drop_partition(conn, table.name, day)
            result = await conn.execute(
                f'DELETE FROM {self.schema}.gaps WHERE "end" < $1', max(cutoff, -(2**62))
            )
            removed += int(result.split()[-1])
        return removed

    async def _drop_partition(self, conn: Conn, table: str, day: int) -> int:
        name = f"{self.schema}.{schema.partition_name(table, day)}"
        async with conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", schema.lock_key("partitions", self.schema)
            )
            # Wait at most this long for writers to let go of the parent; the next pass retries.
            await conn.execute("SET LOCAL lock_timeout = '10s'")
            rows = int(await conn.fetchval(f"SELECT count(*) FROM {name}"))
            await conn.execute(f"DROP TABLE {name}")
        self._partitions.discard((table, day))
        return rows

    async def candle_starts(
        self, provider: str, symbol: str, interval: str, start: int, end: int
    ) -> list[int]:
        """The sorted ``start`` (ns) of every stored candle of the key within ``[start, end)``."""
        rows = await self.pool.fetch(
            f"SELECT start FROM {self.schema}.candles WHERE provider = $1 AND symbol = $2"
            ' AND "interval" = $3 AND start >= $4 AND start < $5 ORDER BY start',
            provider,
            symbol,
            interval,
            _ceil_us(start),  # stored starts are whole microseconds: [start, end) holds the
            _ceil_us(end),  # same ones as [ceil(start), ceil(end)) in microseconds
        )
        return [row[0] for row in rows]

    # ---- reads (a small convenience API; any PostgreSQL client can read the tables) ---------

    async def latest_quote(self, provider: str, symbol: str) -> Quote | None:
        """The most recent stored quote of ``provider:symbol``, or ``None``."""
        row = await self.pool.fetchrow(
            f"SELECT provider, symbol, ts, received_ts, bid, bid_size, ask, ask_size"
            f" FROM {self.schema}.quotes WHERE provider = $1 AND symbol = $2"
            " ORDER BY ts DESC LIMIT 1",
            provider,
            symbol,
        )
        return None if row is None else Quote(*row)

    async def gaps(
        self, provider: str | None = None, symbol: str | None = None, *, status: str | None = None
    ) -> list[Gap]:
        """Stored gaps (with their status), filtered by the arguments given, in key order."""
        if status is not None and status not in _GAP_STATUSES:
            raise ValueError(f"gap status {status!r} is not one of {', '.join(_GAP_STATUSES)}")
        where, args = [], []
        for column, value in (("provider", provider), ("symbol", symbol), ("status", status)):
            if value is not None:
                args.append(value)
                where.append(f"{column} = ${len(args)}")
        sql = (
            'SELECT provider, symbol, kind, start, "end", reason, status, detail'
            f" FROM {self.schema}.gaps"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = await self.pool.fetch(sql + " ORDER BY provider, symbol, kind, start", *args)
        return [Gap(*row) for row in rows]


__all__ = ("TimescaleSink", "TimescaleSinkError")
