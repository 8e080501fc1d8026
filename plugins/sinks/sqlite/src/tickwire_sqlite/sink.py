"""The SQLite sink: one connection, one worker thread, one transaction per batch.

Every call goes through :func:`anyio.to_thread.run_sync` with a ``CapacityLimiter(1)``, so the
event loop never waits on the disk and the one connection is never used by two threads at once.
The file is in WAL mode: readers (``sqlite3 tickwire.db`` in another terminal, a dashboard)
never block the writer, and the writer never blocks them.

Every write is idempotent (see :mod:`tickwire_sqlite.schema` for the keys): a replayed batch
leaves the tables exactly as they were.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, get_args

import anyio
import anyio.to_thread

from tickwire.events import (
    BookDelta,
    BookSnapshot,
    Candle,
    Event,
    Gap,
    GapStatus,
    Quote,
    Trade,
)
from tickwire_sqlite import schema
from tickwire_sqlite.settings import SqliteSettings

_GAP_STATUSES: tuple[str, ...] = get_args(GapStatus)

_T = TypeVar("_T")

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

# ---- statements ------------------------------------------------------------------------------

_INSERT_TRADE = """
INSERT INTO trades (provider, symbol, ts, received_ts, price, size, side, trade_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
"""

# Two quotes at the same ts: the later one is the book's state at the end of that tick.
_INSERT_QUOTE = """
INSERT INTO quotes (provider, symbol, ts, received_ts, bid, bid_size, ask, ask_size)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, symbol, ts) DO UPDATE SET
    received_ts = excluded.received_ts,
    bid = excluded.bid, bid_size = excluded.bid_size,
    ask = excluded.ask, ask_size = excluded.ask_size
"""

# A later write of the same candle updates it (a forming candle becomes the closed one), by
# ``tickwire.events.candle_replaces``: a candle tickwire built never replaces the provider's own
# (streamed or backfilled) one, nor a built one that counts more trades (a builder restarted
# mid-bucket knows only part of it).
_INSERT_CANDLE = """
INSERT INTO candles (provider, symbol, interval, start, open, high, low, close,
                     volume, trades, basis, closed, source)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, symbol, interval, start) DO UPDATE SET
    open = excluded.open, high = excluded.high, low = excluded.low, close = excluded.close,
    volume = excluded.volume, trades = excluded.trades, basis = excluded.basis,
    closed = excluded.closed, source = excluded.source
WHERE excluded.source <> 'built'
   OR (candles.source = 'built' AND (excluded.trades IS NULL OR candles.trades IS NULL
                                     OR excluded.trades >= candles.trades))
"""

# A gap is one row per (provider, symbol, kind, start); a later write takes the new end and
# reason. Its status: a resolution (``filled``/``empty``/``failed``) always applies; a gap found
# again (``open``) keeps what is known about it -- an ``empty`` gap is never fetched again, a
# ``failed`` one keeps its reason -- unless it grew, because then its new part is missing. The
# ``detail`` goes with the status. ``mark_gap`` sets a status unconditionally.
_INSERT_GAP = """
INSERT INTO gaps (provider, symbol, kind, start, "end", reason, status, detail)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, symbol, kind, start) DO UPDATE SET
    "end" = excluded."end",
    reason = excluded.reason,
    status = CASE
        WHEN excluded.status <> 'open' THEN excluded.status
        WHEN excluded."end" > gaps."end" THEN 'open'
        ELSE gaps.status
    END,
    detail = CASE
        WHEN excluded.status <> 'open' OR excluded."end" > gaps."end" THEN excluded.detail
        ELSE gaps.detail
    END
"""

_MARK_GAP = """
INSERT INTO gaps (provider, symbol, kind, start, "end", reason, status, detail)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, symbol, kind, start) DO UPDATE SET
    "end" = excluded."end", reason = excluded.reason, status = excluded.status,
    detail = excluded.detail
"""

_INSERT_BOOK = """
INSERT INTO book_snapshots (provider, symbol, ts, received_ts, bids, asks, sequence)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (provider, symbol, ts) DO UPDATE SET
    received_ts = excluded.received_ts, bids = excluded.bids, asks = excluded.asks,
    sequence = excluded.sequence
"""

#: (table, event-time column) pruned by retention, keyed by (provider, symbol, ...).
_RETAINED: tuple[tuple[str, str], ...] = (
    ("trades", "ts"),
    ("quotes", "ts"),
    ("candles", "start"),
    ("book_snapshots", "ts"),
)


class SqliteSinkError(OSError):
    """The database cannot be opened or written; the message names the file and the fix.

    ``path`` is the database file. A failed batch raises this too (with the SQLite error as
    ``__cause__``): the runner retries it.
    """

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])


def _text(value: Decimal) -> str:
    """Positional text where it keeps the exponent (``0.00000000``, never ``0E-8``, which is
    what ``str`` gives); ``str`` for positive exponents (``1E+30``), so every value reads back
    with the same digits and exponent."""
    exponent = value.as_tuple().exponent
    return format(value, "f") if isinstance(exponent, int) and exponent <= 0 else str(value)


def _dec(value: Decimal | None) -> str | None:
    return None if value is None else _text(value)


def _levels(levels: Sequence[tuple[Decimal, Decimal]]) -> str:
    return json.dumps(
        [[_text(price), _text(size)] for price, size in levels], separators=(",", ":")
    )


def _read_levels(text: str) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(price), Decimal(size)) for price, size in json.loads(text)]


def _opt_dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _clamp(ns: int) -> int:
    return max(_INT64_MIN, min(_INT64_MAX, ns))


class SqliteSink:
    """Stores trades, quotes, candles, gaps (and book snapshots with ``book = true``).

    Implements :class:`tickwire.protocols.Sink`, :class:`~tickwire.protocols.RetentionSink`
    and :class:`~tickwire.protocols.CoverageSink`. The read methods (:meth:`trades`,
    :meth:`candles`, :meth:`gaps` …) are a small convenience API for tests and scripts; any
    SQLite client can read the file directly.

    It is also an async context manager (``open`` on enter, ``aclose`` on exit).
    """

    def __init__(self, settings: SqliteSettings) -> None:
        self.settings = settings
        self.path = settings.path.expanduser()
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._book = settings.book
        ret = settings.retention
        # timedelta -> integer ns without going through float (36500d must stay exact).
        self._retention_ns: int | None = (
            None
            if ret is None
            else ((ret.days * 86400 + ret.seconds) * 1_000_000 + ret.microseconds) * 1000
        )

    # ---- lifecycle ---------------------------------------------------------------------------

    async def open(self) -> None:
        """Create the file (and its folders) if needed, set WAL mode and migrate the schema.

        Raises :class:`SqliteSinkError` naming the path and the fix when the file cannot be
        created, opened or written.
        """
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        if self._conn is None:
            self._conn = await self._run(self._open_sync)

    async def aclose(self) -> None:
        """Close the connection (every batch is already committed)."""
        if self._conn is None or self._limiter is None:
            return
        await self._run(self._close_sync, self._conn)
        self._conn = None

    async def __aenter__(self) -> SqliteSink:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---- the sink contract -------------------------------------------------------------------

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Write ``events`` in one transaction (all or nothing), idempotently.

        ``BookDelta`` is never stored; ``BookSnapshot`` only with ``book = true``. Raises
        :class:`SqliteSinkError` if the transaction fails (nothing of the batch is kept).
        """
        if not events:
            return
        await self._run(self._write_sync, events)

    async def enforce_retention(self, now_ns: int) -> int:
        """Delete rows whose event time is before ``now_ns - retention``; return how many.

        Event time is ``ts`` (trades, quotes, book snapshots) or ``start`` (candles); a gap goes
        once its ``end`` is before the cutoff. With ``retention = None`` nothing is deleted.
        One short transaction per table and symbol, so batches keep flowing meanwhile.
        """
        if self._retention_ns is None:
            return 0
        cutoff = now_ns - self._retention_ns
        if cutoff <= _INT64_MIN:
            return 0  # nothing can be that old
        cutoff = _clamp(cutoff)
        deleted = 0
        for table, column in _RETAINED:
            keys = await self._run(self._keys_sync, table)
            for provider, symbol in keys:
                deleted += await self._run(
                    self._delete_sync,
                    f"DELETE FROM {table} WHERE provider = ? AND symbol = ? AND {column} < ?",
                    (provider, symbol, cutoff),
                )
        deleted += await self._run(self._delete_sync, 'DELETE FROM gaps WHERE "end" < ?', (cutoff,))
        return deleted

    async def candle_starts(
        self, provider: str, symbol: str, interval: str, start: int, end: int
    ) -> list[int]:
        """The sorted ``start`` of every stored candle of the key within ``[start, end)``."""
        rows = await self._query(
            "SELECT start FROM candles WHERE provider = ? AND symbol = ? AND interval = ?"
            " AND start >= ? AND start < ? ORDER BY start",
            (provider, symbol, interval, _clamp(start), _clamp(end)),
        )
        return [row[0] for row in rows]

    # ---- gaps ---------------------------------------------------------------------------------

    async def mark_gap(self, gap: Gap, status: GapStatus, detail: str | None = None) -> None:
        """Set the status of ``gap`` (``open``, ``filled``, ``empty`` or ``failed``, with
        ``detail`` saying why), whatever it was.

        Inserts the gap if it is not stored yet; otherwise updates the row with the same
        provider, symbol, kind and start (its end, reason, status and detail). Writing a
        ``Gap`` event with that status does the same, except that an ``open`` one never
        reopens a resolved gap that did not grow.
        """
        if status not in _GAP_STATUSES:
            raise ValueError(f"gap status {status!r} is not one of {', '.join(_GAP_STATUSES)}")
        row = (gap.provider, gap.symbol, gap.kind, gap.start, gap.end, gap.reason, status, detail)
        await self._run(self._execute_sync, _MARK_GAP, row)

    async def gaps(
        self,
        provider: str | None = None,
        symbol: str | None = None,
        *,
        kind: str | None = None,
        status: GapStatus | None = None,
    ) -> list[Gap]:
        """Stored gaps (with their status), filtered by the arguments given, in key order."""
        where, params = [], []
        for column, value in (
            ("provider", provider),
            ("symbol", symbol),
            ("kind", kind),
            ("status", status),
        ):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        sql = 'SELECT provider, symbol, kind, start, "end", reason, status, detail FROM gaps'
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY provider, symbol, kind, start"
        rows = await self._query(sql, tuple(params))
        return [Gap(*row) for row in rows]

    # ---- reads --------------------------------------------------------------------------------

    async def trades(
        self,
        provider: str,
        symbol: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
    ) -> list[Trade]:
        """Trades of one symbol with ``start <= ts < end``, oldest first.

        With ``limit``, the most recent ``limit`` of them (still oldest first).
        """
        rows = await self._range(
            "SELECT provider, symbol, ts, received_ts, price, size, side, trade_id FROM trades",
            "ts",
            ("provider", "symbol"),
            (provider, symbol),
            start,
            end,
            limit,
        )
        return [
            Trade(p, s, ts, rts, Decimal(price), Decimal(size), side, tid)
            for p, s, ts, rts, price, size, side, tid in rows
        ]

    async def quotes(
        self,
        provider: str,
        symbol: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
    ) -> list[Quote]:
        """Quotes of one symbol with ``start <= ts < end``, oldest first (``limit``: latest)."""
        rows = await self._range(
            "SELECT provider, symbol, ts, received_ts, bid, bid_size, ask, ask_size FROM quotes",
            "ts",
            ("provider", "symbol"),
            (provider, symbol),
            start,
            end,
            limit,
        )
        return [
            Quote(p, s, ts, rts, _opt_dec(b), _opt_dec(bs), _opt_dec(a), _opt_dec(as_))
            for p, s, ts, rts, b, bs, a, as_ in rows
        ]

    async def candles(
        self,
        provider: str,
        symbol: str,
        interval: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
    ) -> list[Candle]:
        """Candles of one key with ``start`` in ``[start, end)``, oldest first."""
        rows = await self._range(
            "SELECT provider, symbol, interval, start, open, high, low, close, volume, trades,"
            " basis, closed, source FROM candles",
            "start",
            ("provider", "symbol", "interval"),
            (provider, symbol, interval),
            start,
            end,
            limit,
        )
        return [
            Candle(
                p,
                s,
                iv,
                st,
                Decimal(o),
                Decimal(h),
                Decimal(lo),
                Decimal(c),
                _opt_dec(v),
                n,
                basis,
                bool(closed),
                source,
            )
            for p, s, iv, st, o, h, lo, c, v, n, basis, closed, source in rows
        ]

    async def book_snapshots(
        self,
        provider: str,
        symbol: str,
        *,
        start: int | None = None,
        end: int | None = None,
        limit: int | None = None,
    ) -> list[BookSnapshot]:
        """Stored book snapshots of one symbol (empty unless ``book = true``)."""
        if not await self._run(self._has_table_sync, "book_snapshots"):
            return []
        rows = await self._range(
            "SELECT provider, symbol, ts, received_ts, bids, asks, sequence FROM book_snapshots",
            "ts",
            ("provider", "symbol"),
            (provider, symbol),
            start,
            end,
            limit,
        )
        return [
            BookSnapshot(p, s, ts, rts, _read_levels(bids), _read_levels(asks), seq)
            for p, s, ts, rts, bids, asks, seq in rows
        ]

    async def counts(self) -> dict[str, int]:
        """Rows per table."""
        return await self._run(self._counts_sync)

    # ---- plumbing (worker thread) --------------------------------------------------------------

    async def _run(self, func: Callable[..., _T], *args: Any) -> _T:
        if self._limiter is None:
            raise SqliteSinkError(f"{self.path}: the SQLite sink is not open", self.path)
        return await anyio.to_thread.run_sync(func, *args, limiter=self._limiter)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise SqliteSinkError(
                f"{self.path}: the SQLite sink is not open (call open() first)", self.path
            )
        return self._conn

    async def _query(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return await self._run(self._query_sync, sql, params)

    async def _range(
        self,
        select: str,
        time_column: str,
        key_columns: tuple[str, ...],
        key: tuple[Any, ...],
        start: int | None,
        end: int | None,
        limit: int | None,
    ) -> list[tuple[Any, ...]]:
        where = [f"{column} = ?" for column in key_columns]
        params: list[Any] = list(key)
        if start is not None:
            where.append(f"{time_column} >= ?")
            params.append(_clamp(start))
        if end is not None:
            where.append(f"{time_column} < ?")
            params.append(_clamp(end))
        sql = f"{select} WHERE {' AND '.join(where)}"
        if limit is None:
            return await self._query(sql + f" ORDER BY {time_column}", tuple(params))
        rows = await self._query(sql + f" ORDER BY {time_column} DESC LIMIT ?", (*params, limit))
        rows.reverse()
        return rows

    def _fail(self, doing: str, exc: Exception) -> SqliteSinkError:
        message = str(exc)
        lowered = message.lower()
        if "readonly" in lowered or "read-only" in lowered:
            fix = "the file (or its folder) is read-only: make both writable by this user"
        elif "unable to open" in lowered or "disk i/o" in lowered:
            fix = (
                "check that the folder exists and is writable by this user (SQLite also "
                "creates -wal and -shm files beside the database), or set the sink's path "
                "(TICKWIRE_SQLITE_PATH) elsewhere"
            )
        elif "not a database" in lowered or "malformed" in lowered:
            fix = (
                "the file is not a (healthy) SQLite database: move it aside or choose another path"
            )
        elif "locked" in lowered or "busy" in lowered:
            fix = "another process holds the write lock: stop it, or raise the sink's busy_timeout"
        elif "full" in lowered:
            fix = "the disk is full: free space or move the database"
        else:
            fix = "see the SQLite error above"
        return SqliteSinkError(
            f"{self.path}: cannot {doing} the SQLite database ({message}); {fix}", self.path
        )

    def _open_sync(self) -> sqlite3.Connection:
        path = self.path
        parent = path.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SqliteSinkError(
                f"{path}: cannot create the folder {parent} for the SQLite database "
                f"({exc.strerror or exc}); create it or set the sink's path "
                "(TICKWIRE_SQLITE_PATH) to a writable location",
                path,
            ) from None
        if path.is_dir():
            raise SqliteSinkError(
                f"{path} is a directory, not a database file; set the sink's path to a file "
                f"such as {path / 'tickwire.db'}",
                path,
            )
        busy_ms = max(0, int(self.settings.busy_timeout.total_seconds() * 1000))
        conn: sqlite3.Connection | None = None
        try:
            conn = sqlite3.connect(
                path,
                timeout=busy_ms / 1000,
                isolation_level=None,  # we issue BEGIN/COMMIT ourselves
                check_same_thread=False,  # one thread at a time, through the limiter
            )
            conn.execute(f"PRAGMA busy_timeout = {busy_ms:d}")
            self._retry_busy(conn, "PRAGMA journal_mode = WAL", busy_ms)
            conn.execute(f"PRAGMA synchronous = {self.settings.synchronous.upper()}")
            conn.execute("PRAGMA temp_store = MEMORY")
            # Negative: a size in KiB rather than pages. The cache fills up to it, then stays.
            conn.execute(f"PRAGMA cache_size = -{max(1, self.settings.cache_size // 1024):d}")
            schema.migrate(conn, book=self._book)
        except schema.NewerSchema as exc:
            if conn is not None:
                conn.close()
            raise SqliteSinkError(
                f"{path}: the database has schema version {exc.found}, newer than this "
                f"tickwire-sqlite knows ({schema.SCHEMA_VERSION}); upgrade tickwire-sqlite "
                "or choose another path",
                path,
            ) from None
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise self._fail("open", exc) from None
        return conn

    @staticmethod
    def _retry_busy(conn: sqlite3.Connection, sql: str, busy_ms: int) -> None:
        # Switching to WAL needs a moment of exclusive access and does not always go through
        # the busy handler: a second process opening the file at the same time retries here.
        deadline = time.monotonic() + busy_ms / 1000
        while True:
            try:
                conn.execute(sql).fetchall()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @staticmethod
    def _close_sync(conn: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.Error):  # statistics only: never fail a shutdown
            conn.execute("PRAGMA optimize")
        conn.close()

    def _write_sync(self, events: Sequence[Event]) -> None:
        trades: list[tuple[Any, ...]] = []
        quotes: list[tuple[Any, ...]] = []
        candles: list[tuple[Any, ...]] = []
        gaps: list[tuple[Any, ...]] = []
        books: list[tuple[Any, ...]] = []
        for e in events:
            if isinstance(e, Trade):
                trades.append(
                    (
                        e.provider,
                        e.symbol,
                        e.ts,
                        e.received_ts,
                        _text(e.price),
                        _text(e.size),
                        e.side,
                        e.trade_id,
                    )
                )
            elif isinstance(e, Quote):
                quotes.append(
                    (
                        e.provider,
                        e.symbol,
                        e.ts,
                        e.received_ts,
                        _dec(e.bid),
                        _dec(e.bid_size),
                        _dec(e.ask),
                        _dec(e.ask_size),
                    )
                )
            elif isinstance(e, Candle):
                candles.append(
                    (
                        e.provider,
                        e.symbol,
                        e.interval,
                        e.start,
                        _text(e.open),
                        _text(e.high),
                        _text(e.low),
                        _text(e.close),
                        _dec(e.volume),
                        e.trades,
                        e.basis,
                        int(e.closed),
                        e.source,
                    )
                )
            elif isinstance(e, Gap):
                gaps.append(
                    (e.provider, e.symbol, e.kind, e.start, e.end, e.reason, e.status, e.detail)
                )
            elif isinstance(e, BookSnapshot):
                if self._book:
                    books.append(
                        (
                            e.provider,
                            e.symbol,
                            e.ts,
                            e.received_ts,
                            _levels(e.bids),
                            _levels(e.asks),
                            e.sequence,
                        )
                    )
            elif isinstance(e, BookDelta):
                pass  # SQL sinks store snapshots, never deltas
        if not (trades or quotes or candles or gaps or books):
            return
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if trades:
                    conn.executemany(_INSERT_TRADE, trades)
                if quotes:
                    conn.executemany(_INSERT_QUOTE, quotes)
                if candles:
                    conn.executemany(_INSERT_CANDLE, candles)
                if gaps:
                    conn.executemany(_INSERT_GAP, gaps)
                if books:
                    conn.executemany(_INSERT_BOOK, books)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OverflowError) as exc:
            # OverflowError: an integer beyond SQLite's 64 bits (a corrupt timestamp).
            raise self._fail(f"write a batch of {len(events)} events to", exc) from exc

    def _execute_sync(self, sql: str, params: tuple[Any, ...]) -> None:
        try:
            self._connection().execute(sql, params)
        except sqlite3.Error as exc:
            raise self._fail("write to", exc) from exc

    def _query_sync(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._fail("read", exc) from exc

    def _has_table_sync(self, name: str) -> bool:
        return schema.has_table(self._connection(), name)

    def _keys_sync(self, table: str) -> list[tuple[str, str]]:
        """Every distinct (provider, symbol) of ``table``, by hopping along its key index.

        One indexed lookup per symbol instead of a scan of the table: a hand-made skip-scan,
        so retention needs no extra index on the time column (which would slow every insert).
        """
        conn = self._connection()
        if not schema.has_table(conn, table):
            return []
        keys: list[tuple[str, str]] = []
        row = conn.execute(
            f"SELECT provider, symbol FROM {table} ORDER BY provider, symbol LIMIT 1"
        ).fetchone()
        while row is not None:
            keys.append((row[0], row[1]))
            row = conn.execute(
                f"SELECT provider, symbol FROM {table} WHERE (provider, symbol) > (?, ?)"
                " ORDER BY provider, symbol LIMIT 1",
                (row[0], row[1]),
            ).fetchone()
        return keys

    def _delete_sync(self, sql: str, params: tuple[Any, ...]) -> int:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                count = conn.execute(sql, params).rowcount
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._fail("prune", exc) from exc
        return max(count, 0)

    def _counts_sync(self) -> dict[str, int]:
        conn = self._connection()
        tables = ["trades", "quotes", "candles", "gaps"]
        if schema.has_table(conn, "book_snapshots"):
            tables.append("book_snapshots")
        return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in tables}
