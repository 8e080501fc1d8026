"""The SQLite schema and its versioned migrations.

The schema version lives in ``PRAGMA user_version``. :func:`migrate` runs every migration the
file has not seen yet inside one ``BEGIN IMMEDIATE`` transaction: the write lock makes a second
process that opens the same file at the same moment wait (``busy_timeout``), then find the
version already current and do nothing. Running it twice is a no-op. To change the schema,
append a tuple of statements to :data:`MIGRATIONS`; never edit one that has shipped.

Value encoding, for everything below:

* times (``ts``, ``received_ts``, ``start``, ``end``) are INTEGER nanoseconds since the Unix
  epoch, UTC: exact, sortable, and what the events carry;
* prices and sizes are TEXT holding ``str(Decimal)`` exactly as the provider sent it
  (``10101.80000000`` keeps its zeros). The column type must stay ``TEXT``: a ``NUMERIC`` or
  ``REAL`` column would make SQLite turn such text into a float;
* ``closed`` is 0/1; ``side``, ``basis``, ``source``, ``status`` are the event's own words;
  a gap's ``detail`` (why it ``failed``) is TEXT, NULL for the other states.

Column names are the event field names; ``"end"`` must be quoted in SQL (it is a keyword).
"""

from __future__ import annotations

import sqlite3

#: Each entry brings the schema from version ``i`` to ``i + 1``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the initial schema.
    (
        """
        CREATE TABLE trades (
            provider    TEXT    NOT NULL,
            symbol      TEXT    NOT NULL,
            ts          INTEGER NOT NULL,
            received_ts INTEGER NOT NULL,
            price       TEXT    NOT NULL,
            size        TEXT    NOT NULL,
            side        TEXT,
            trade_id    TEXT
        )
        """,
        # The idempotency key (provider, symbol, trade_id, ts). SQLite treats NULLs as distinct
        # in a UNIQUE index, so a plain index would store a replayed trade without an id twice.
        # We keep NULL in the column (so ``trade_id IS NULL`` means what it says and reads back
        # as None) and key on expressions instead: ``trade_id IS NULL`` tells a missing id from
        # an empty one, ``ifnull(trade_id, '')`` makes the missing ids equal. A sentinel value
        # in the column would have leaked into every user query. With ``ts`` third, the same
        # index serves "latest N trades of a symbol" and "trades of a symbol in a range".
        """
        CREATE UNIQUE INDEX trades_key
            ON trades (provider, symbol, ts, trade_id IS NULL, ifnull(trade_id, ''))
        """,
        """
        CREATE TABLE quotes (
            provider    TEXT    NOT NULL,
            symbol      TEXT    NOT NULL,
            ts          INTEGER NOT NULL,
            received_ts INTEGER NOT NULL,
            bid         TEXT,
            bid_size    TEXT,
            ask         TEXT,
            ask_size    TEXT,
            PRIMARY KEY (provider, symbol, ts)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE candles (
            provider TEXT    NOT NULL,
            symbol   TEXT    NOT NULL,
            interval TEXT    NOT NULL,
            start    INTEGER NOT NULL,
            open     TEXT    NOT NULL,
            high     TEXT    NOT NULL,
            low      TEXT    NOT NULL,
            close    TEXT    NOT NULL,
            volume   TEXT,
            trades   INTEGER,
            basis    TEXT    NOT NULL,
            closed   INTEGER NOT NULL,
            source   TEXT    NOT NULL,
            PRIMARY KEY (provider, symbol, interval, start)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE gaps (
            provider TEXT    NOT NULL,
            symbol   TEXT    NOT NULL,
            kind     TEXT    NOT NULL,
            start    INTEGER NOT NULL,
            "end"    INTEGER NOT NULL,
            reason   TEXT    NOT NULL,
            status   TEXT    NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'filled', 'empty')),
            PRIMARY KEY (provider, symbol, kind, start)
        ) WITHOUT ROWID
        """,
    ),
    # 2: gaps can be ``failed``, with a ``detail`` saying why. SQLite cannot change a CHECK
    # constraint in place, so the table is rebuilt (the documented 12-step way, within the
    # migration's transaction; ``gaps`` has no index, trigger or view depending on it).
    (
        """
        CREATE TABLE gaps_v2 (
            provider TEXT    NOT NULL,
            symbol   TEXT    NOT NULL,
            kind     TEXT    NOT NULL,
            start    INTEGER NOT NULL,
            "end"    INTEGER NOT NULL,
            reason   TEXT    NOT NULL,
            status   TEXT    NOT NULL DEFAULT 'open'
                     CHECK (status IN ('open', 'filled', 'empty', 'failed')),
            detail   TEXT,
            PRIMARY KEY (provider, symbol, kind, start)
        ) WITHOUT ROWID
        """,
        """
        INSERT INTO gaps_v2 (provider, symbol, kind, start, "end", reason, status)
            SELECT provider, symbol, kind, start, "end", reason, status FROM gaps
        """,
        "DROP TABLE gaps",
        "ALTER TABLE gaps_v2 RENAME TO gaps",
    ),
)

#: The newest schema version this package writes.
SCHEMA_VERSION = len(MIGRATIONS)

#: Created (if missing) when ``book = true``; not versioned, so a database that never stored
#: books has no empty table. Its rows are a few kB, so it keeps a rowid (SQLite advises against
#: WITHOUT ROWID for wide rows) with a unique index as the idempotency key.
BOOK_SNAPSHOTS: tuple[str, ...] = (
    """
    CREATE TABLE IF NOT EXISTS book_snapshots (
        provider    TEXT    NOT NULL,
        symbol      TEXT    NOT NULL,
        ts          INTEGER NOT NULL,
        received_ts INTEGER NOT NULL,
        bids        TEXT    NOT NULL,
        asks        TEXT    NOT NULL,
        sequence    INTEGER
    )
    """,
    """
    CREATE UNIQUE INDEX IF NOT EXISTS book_snapshots_key
        ON book_snapshots (provider, symbol, ts)
    """,
)


class NewerSchema(Exception):
    """The file was written by a newer tickwire-sqlite than this one."""

    def __init__(self, found: int) -> None:
        super().__init__(found)
        self.found = found


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the open database (0 for a new file)."""
    row = conn.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(conn: sqlite3.Connection, *, book: bool = False) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`; return how many migrations ran.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Everything happens in one
    ``BEGIN IMMEDIATE`` transaction: all of it or none. Raises :class:`NewerSchema` for a file
    from a newer version, and ``sqlite3.Error`` for anything SQLite refuses.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = schema_version(conn)
        if found > SCHEMA_VERSION:
            raise NewerSchema(found)
        for statements in MIGRATIONS[found:]:
            for statement in statements:
                conn.execute(statement)
        if found < SCHEMA_VERSION:
            # PRAGMA takes no parameters; SCHEMA_VERSION is our own int.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        if book:
            for statement in BOOK_SNAPSHOTS:
                conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return SCHEMA_VERSION - found


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether table ``name`` exists."""
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None
