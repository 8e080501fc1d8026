"""The PostgreSQL schema, its versioned migrations and its daily partitions.

Everything lives in one PostgreSQL schema (setting ``schema``, default ``tickwire``). The
applied migrations are rows of ``<schema>.tickwire_migrations``; :func:`migrate` applies the
missing ones in one transaction that first takes a transaction-scoped advisory lock
(``pg_advisory_xact_lock``) keyed by the schema name, so two sinks opening at once serialize:
the second waits, then finds every migration applied and does nothing. Running it twice is a
no-op. To change the schema, append a :class:`Migration`; never edit one that has shipped.

Value encoding:

* times (``ts``, ``received_ts``, ``start``, ``end``) are ``timestamptz``. Events carry
  nanoseconds; PostgreSQL keeps microseconds, so the sub-microsecond part is dropped (floored)
  on the way in. Two events whose key differs only below the microsecond are the same row:
  trades keep the first (``DO NOTHING``), quotes/candles/gaps/books keep the last of a batch;
* prices and sizes are ``numeric`` (exact, any scale: ``10101.80000000`` keeps its zeros);
* ``trade_id`` is ``NOT NULL``; a trade without an id is stored with the empty string ``''``
  and read back as ``None`` (see :data:`NO_TRADE_ID` for why not ``NULLS NOT DISTINCT``);
* text key columns are ``COLLATE "C"`` (byte order: no locale work in the unique indexes).

Back ends: plain PostgreSQL (declarative ``PARTITION BY RANGE`` with one partition per UTC
day, created ahead and on demand, dropped by retention) or TimescaleDB (hypertables; the DDL
is in :mod:`tickwire_timescale.timescaledb`). The back end a schema was created with is
recorded in the migrations table and kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import asyncpg

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    #: A connection, or one borrowed from a pool.
    Conn: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

Backend = Literal["postgres", "timescaledb"]

NS_PER_DAY = 86_400 * 1_000_000_000
_EPOCH = date(1970, 1, 1)

#: Stored in ``trades.trade_id`` for a trade without an id. The unique key must treat two
#: missing ids as equal, or a replayed id-less trade would be stored twice. ``NULLS NOT
#: DISTINCT`` would do that with ``NULL`` kept, but it needs PostgreSQL 15+, and TimescaleDB has
#: had data-corruption bugs with ``NULLS NOT DISTINCT`` keys on compressed chunks
#: (timescale/timescaledb#9575, #10057, #10579: ``ON CONFLICT DO NOTHING`` inserted
#: duplicates). A ``NOT NULL`` column with a sentinel works the same on every version and
#: back end. No provider uses ``''`` as a real trade id.
NO_TRADE_ID = ""


@dataclass(frozen=True)
class Table:
    """One stored table: its columns (in event-field order), key and time column."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...]
    time_column: str
    partitioned: bool = True
    segmentby: tuple[str, ...] = ("provider", "symbol")

    @property
    def column_names(self) -> tuple[str, ...]:
        """Column names, unquoted, in table order."""
        return tuple(name for name, _ in self.columns)

    @property
    def column_list(self) -> str:
        """Column names, quoted where needed, comma-separated."""
        return ", ".join(quote(name) for name in self.column_names)

    @property
    def key_list(self) -> str:
        """Key columns, quoted where needed, comma-separated."""
        return ", ".join(quote(name) for name in self.key)

    @property
    def stage(self) -> str:
        """Name of this connection's temporary staging table."""
        return f"tw_stage_{self.name}"


_TEXT = 'text COLLATE "C" NOT NULL'
_TS = "timestamptz NOT NULL"

TRADES = Table(
    "trades",
    (
        ("provider", _TEXT),
        ("symbol", _TEXT),
        ("ts", _TS),
        ("received_ts", _TS),
        ("price", "numeric NOT NULL"),
        ("size", "numeric NOT NULL"),
        ("side", "text"),
        ("trade_id", _TEXT),
    ),
    key=("provider", "symbol", "ts", "trade_id"),
    time_column="ts",
)
QUOTES = Table(
    "quotes",
    (
        ("provider", _TEXT),
        ("symbol", _TEXT),
        ("ts", _TS),
        ("received_ts", _TS),
        ("bid", "numeric"),
        ("bid_size", "numeric"),
        ("ask", "numeric"),
        ("ask_size", "numeric"),
    ),
    key=("provider", "symbol", "ts"),
    time_column="ts",
)
CANDLES = Table(
    "candles",
    (
        ("provider", _TEXT),
        ("symbol", _TEXT),
        ("interval", _TEXT),
        ("start", _TS),
        ("open", "numeric NOT NULL"),
        ("high", "numeric NOT NULL"),
        ("low", "numeric NOT NULL"),
        ("close", "numeric NOT NULL"),
        ("volume", "numeric"),
        ("trades", "bigint"),
        ("basis", "text NOT NULL"),
        ("closed", "boolean NOT NULL"),
        ("source", "text NOT NULL"),
    ),
    key=("provider", "symbol", "interval", "start"),
    time_column="start",
    segmentby=("provider", "symbol", "interval"),
)
#: ``gaps`` as migration 1 created it (kept as it was: a shipped migration never changes).
GAPS_V1 = Table(
    "gaps",
    (
        ("provider", _TEXT),
        ("symbol", _TEXT),
        ("kind", _TEXT),
        ("start", _TS),
        ("end", _TS),
        ("reason", "text NOT NULL"),
        ("status", "text NOT NULL"),
    ),
    key=("provider", "symbol", "kind", "start"),
    time_column="start",
    partitioned=False,
)
#: ``gaps`` now: migration 3 added ``detail``, why a ``failed`` gap failed (NULL otherwise).
GAPS = replace(GAPS_V1, columns=(*GAPS_V1.columns, ("detail", "text")))
BOOK_SNAPSHOTS = Table(
    "book_snapshots",
    (
        ("provider", _TEXT),
        ("symbol", _TEXT),
        ("ts", _TS),
        ("received_ts", _TS),
        ("bids", "numeric[] NOT NULL"),  # [[price, size], ...], best first
        ("asks", "numeric[] NOT NULL"),
        ("sequence", "bigint"),
    ),
    key=("provider", "symbol", "ts"),
    time_column="ts",
)

#: Every table, by name.
TABLES: dict[str, Table] = {t.name: t for t in (TRADES, QUOTES, CANDLES, GAPS, BOOK_SNAPSHOTS)}

_KEYWORDS = frozenset({"interval", "start", "end", "open", "close", "high", "low", "trades"})


def quote(name: str) -> str:
    """``name`` as an SQL identifier, double-quoted when it is a keyword."""
    return f'"{name}"' if name in _KEYWORDS else name


def table_ddl(schema: str, table: Table, backend: Backend) -> list[str]:
    """``CREATE TABLE`` (and its indexes) for ``table`` on ``backend``.

    Plain PostgreSQL: partitioned by range on the time column (partitions come from
    :func:`ensure_partitions`), a BRIN index on the time column for cross-symbol time ranges.
    The unique key ``(provider, symbol, <time>, ...)`` is also the index that serves "latest N
    for a symbol" and "a range for a symbol". TimescaleDB: a plain table, made a hypertable by
    :mod:`tickwire_timescale.timescaledb`.
    """
    cols = ",\n    ".join(f"{quote(n)} {t}" for n, t in table.columns)
    kind = "PRIMARY KEY" if table.name != "trades" else "UNIQUE"
    part = (
        f" PARTITION BY RANGE ({quote(table.time_column)})"
        if table.partitioned and backend == "postgres"
        else ""
    )
    out = [
        f"CREATE TABLE {schema}.{table.name} (\n    {cols},\n"
        f"    CONSTRAINT {table.name}_key {kind} ({table.key_list})\n){part}"
    ]
    if backend == "postgres" and table.name in ("trades", "quotes"):
        out.append(
            f"CREATE INDEX {table.name}_ts_brin ON {schema}.{table.name} "
            f"USING brin ({quote(table.time_column)})"
        )
    return out


def stage_ddl(table: Table) -> str:
    """The session's temporary staging table that COPY fills before the upsert."""
    cols = ", ".join(f"{quote(n)} {t.replace(' NOT NULL', '')}" for n, t in table.columns)
    return f"CREATE TEMP TABLE IF NOT EXISTS {table.stage} ({cols}) ON COMMIT DELETE ROWS"


# ---- migrations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What the migrations depend on (from the settings)."""

    book: bool = False
    retention: timedelta | None = None
    chunk_interval: timedelta = timedelta(days=1)
    compress_after: timedelta = timedelta(days=7)


@dataclass(frozen=True)
class Migration:
    """One schema change: ``statements(schema, backend, options)``; applied once."""

    version: int
    name: str
    statements: Callable[[str, Backend, Options], list[str]]
    enabled: Callable[[Options], bool] = field(default=lambda options: True)


def _initial(schema: str, backend: Backend, options: Options) -> list[str]:
    out: list[str] = []
    for table in (TRADES, QUOTES, CANDLES, GAPS_V1):
        out += table_ddl(schema, table, backend)
    if backend == "timescaledb":
        from tickwire_timescale import timescaledb

        timescaledb.check_retention(options)
        for table in (TRADES, QUOTES, CANDLES):
            out += timescaledb.hypertable_statements(schema, table, options)
        out += timescaledb.continuous_aggregate_statements(schema, options)
    return out


def _book(schema: str, backend: Backend, options: Options) -> list[str]:
    out = table_ddl(schema, BOOK_SNAPSHOTS, backend)
    if backend == "timescaledb":
        from tickwire_timescale import timescaledb

        out += timescaledb.hypertable_statements(schema, BOOK_SNAPSHOTS, options)
    return out


def _gap_detail(schema: str, backend: Backend, options: Options) -> list[str]:
    # A gap can be ``failed`` now, and ``detail`` says why. ``status`` has no CHECK here (the
    # sink writes only the event's own words), so adding the column is the whole change; it is
    # nullable with no default, so PostgreSQL adds it without rewriting the table.
    return [f"ALTER TABLE {schema}.gaps ADD COLUMN detail text"]


#: Every migration, in order. Version 2 is applied only once ``book = true`` is set.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "trades, quotes, candles, gaps", _initial),
    Migration(2, "book_snapshots", _book, enabled=lambda options: options.book),
    Migration(3, "gaps.detail (failed gaps)", _gap_detail),
)


def lock_key(*parts: str) -> int:
    """A stable signed 64-bit advisory-lock key for ``parts`` (same in every process)."""
    digest = hashlib.blake2b("\0".join(("tickwire", *parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def detect_backend(conn: Conn, mode: str) -> Backend:
    """Pick the back end for a new schema: TimescaleDB when installed (or installable).

    ``mode`` is the ``timescaledb`` setting. With ``auto``, an extension that is available but
    not installed is created (inside a savepoint: a server without the library preloaded, or a
    user without the privilege, simply stays on plain PostgreSQL). With ``on``, not having it
    is an error.
    """
    if mode == "off":
        return "postgres"
    installed = await conn.fetchval(
        "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
    )
    if installed is not None:
        return "timescaledb"
    available = await conn.fetchval(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    if available is not None:
        try:
            async with conn.transaction():
                await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            return "timescaledb"
        except asyncpg.PostgresError as exc:
            if mode == "on":
                raise RuntimeError(f"cannot create extension timescaledb: {exc}") from exc
    if mode == "on":
        raise RuntimeError(
            "timescaledb = 'on' but the timescaledb extension is not available on this server "
            "(set timescaledb = 'auto' or 'off' to use plain PostgreSQL partitions)"
        )
    return "postgres"


async def migrate(conn: Conn, schema: str, mode: str, options: Options) -> Backend:
    """Create the schema if needed and apply every missing, enabled migration.

    Safe to run twice and from two processes at once (see the module docstring). Returns the
    back end the schema uses.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("migrate", schema))
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.tickwire_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, backend text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await conn.fetch(
            f"SELECT version, backend FROM {schema}.tickwire_migrations ORDER BY version"
        )
        applied = {row["version"] for row in rows}
        backend: Backend = rows[0]["backend"] if rows else await detect_backend(conn, mode)
        for migration in MIGRATIONS:
            if migration.version in applied or not migration.enabled(options):
                continue
            for statement in migration.statements(schema, backend, options):
                await conn.execute(statement)
            await conn.execute(
                f"INSERT INTO {schema}.tickwire_migrations (version, name, backend)"
                " VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                backend,
            )
    return backend


# ---- daily partitions (plain PostgreSQL) --------------------------------------------------


def day_of(ns: int) -> int:
    """The UTC day number (days since 1970-01-01) of a nanosecond timestamp."""
    return ns // NS_PER_DAY


def partition_name(table: str, day: int) -> str:
    """``trades_p20261201`` for day number ``day``."""
    return f"{table}_p{(_EPOCH + timedelta(days=day)).strftime('%Y%m%d')}"


def _bound(day: int) -> str:
    moment = datetime.combine(_EPOCH + timedelta(days=day), datetime.min.time(), tzinfo=UTC)
    return moment.isoformat()


def partition_ddl(schema: str, table: str, day: int) -> str:
    """``CREATE TABLE IF NOT EXISTS`` of the partition holding UTC day ``day``."""
    return (
        f"CREATE TABLE IF NOT EXISTS {schema}.{partition_name(table, day)} "
        f"PARTITION OF {schema}.{table} FOR VALUES FROM ('{_bound(day)}') TO ('{_bound(day + 1)}')"
    )


async def ensure_partitions(conn: Conn, schema: str, wanted: Iterable[tuple[str, int]]) -> None:
    """Create the partitions ``(table, day)`` that do not exist yet, in one short transaction.

    Runs in its own transaction (never inside a batch's): creating a partition locks the parent
    table, and holding that lock for a whole batch would stall every reader. Two writers that
    need the same day serialize on an advisory lock, and ``IF NOT EXISTS`` makes the second a
    no-op.
    """
    wanted = sorted(set(wanted))
    if not wanted:
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key("partitions", schema))
        for table, day in wanted:
            await conn.execute(partition_ddl(schema, table, day))


async def list_partitions(conn: Conn, schema: str, table: str) -> list[int]:
    """The day numbers of ``table``'s partitions (named ``<table>_pYYYYMMDD``), sorted."""
    names: Sequence[str] = [
        row[0]
        for row in await conn.fetch(
            "SELECT c.relname FROM pg_inherits i"
            " JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent"
            " JOIN pg_namespace n ON n.oid = p.relnamespace"
            " WHERE n.nspname = $1 AND p.relname = $2",
            schema,
            table,
        )
    ]
    prefix = f"{table}_p"
    days = []
    for name in names:
        suffix = name[len(prefix) :]
        if name.startswith(prefix) and len(suffix) == 8 and suffix.isdigit():
            parsed = datetime.strptime(suffix, "%Y%m%d").date()
            days.append((parsed - _EPOCH).days)
    return sorted(days)
