"""The TimescaleDB back end: the statements that turn the tables into hypertables.

Used only when the ``timescaledb`` extension is installed in the database (see
:func:`tickwire_timescale.schema.detect_backend`). The tables are the same as on plain
PostgreSQL (same columns, same unique keys, so the writer is the same); what differs:

* each time-keyed table is a hypertable with chunks of ``chunk_interval`` (default 1 day),
  made with ``create_hypertable(..., by_range(...))`` (the generalized API, TimescaleDB 2.13+);
  every unique key contains the time column, as hypertables require;
* compression (columnstore) with ``segmentby`` the key's leading columns and ``orderby`` time
  descending, and a compression policy after ``compress_after`` (``add_compression_policy``,
  which newer releases keep as an alias of ``add_columnstore_policy``). ``INSERT ... ON
  CONFLICT`` into compressed chunks works from TimescaleDB 2.11 on;
* ``add_retention_policy`` drops whole chunks older than ``retention`` (by event time), in
  the database's own job scheduler, so retention holds even while no tickwire runs;
* a continuous aggregate ``trades_1m``: 1-minute OHLCV candles from ``trades``, refreshed
  every minute over the last two hours.

TimescaleDB is not packaged for the Debian machines this project is tested on, so these
statements are checked as golden SQL in the tests (``tests/test_timescaledb_sql.py``), not run.
"""

from __future__ import annotations

from datetime import timedelta

from tickwire_timescale.schema import TRADES, Options, Table, quote

#: How far back the continuous aggregate's policy re-materializes (late trades inside this
#: window are picked up). Retention must be longer, or raw rows go before they are aggregated.
CAGG_START_OFFSET = timedelta(hours=2)


def interval_literal(value: timedelta) -> str:
    """``INTERVAL '1 day'`` / ``INTERVAL '90 seconds'``: exact, never through a float."""
    seconds = value.days * 86_400 + value.seconds
    if value.microseconds:
        return f"INTERVAL '{seconds * 1_000_000 + value.microseconds} microseconds'"
    if seconds % 86_400 == 0:
        days = seconds // 86_400
        return f"INTERVAL '{days} day{'s' if days != 1 else ''}'"
    if seconds % 3600 == 0:
        hours = seconds // 3600
        return f"INTERVAL '{hours} hour{'s' if hours != 1 else ''}'"
    return f"INTERVAL '{seconds} seconds'"


def hypertable_statements(schema: str, table: Table, options: Options) -> list[str]:
    """Make ``table`` (already created, empty) a compressed hypertable with retention."""
    name = f"{schema}.{table.name}"
    time_col = table.time_column
    segmentby = ", ".join(quote(c) for c in table.segmentby)
    out = [
        f"SELECT create_hypertable('{name}', by_range('{time_col}', "
        f"{interval_literal(options.chunk_interval)}), if_not_exists => TRUE)",
        f"ALTER TABLE {name} SET (timescaledb.compress, "
        f"timescaledb.compress_segmentby = '{segmentby}', "
        f"timescaledb.compress_orderby = '{quote(time_col)} DESC')",
        f"SELECT add_compression_policy('{name}', "
        f"compress_after => {interval_literal(options.compress_after)}, if_not_exists => TRUE)",
    ]
    if options.retention is not None:
        out.append(
            f"SELECT add_retention_policy('{name}', "
            f"drop_after => {interval_literal(options.retention)}, if_not_exists => TRUE)"
        )
    return out


def continuous_aggregate_statements(schema: str, options: Options) -> list[str]:
    """``<schema>.trades_1m``: 1-minute candles from trades, kept as long as the trades.

    ``WITH NO DATA`` lets it be created inside the migration's transaction; the policy fills
    it. ``first``/``last`` order by ``ts`` (ties: the order TimescaleDB meets the rows).
    """
    view = f"{schema}.trades_1m"
    bucket = "time_bucket(INTERVAL '1 minute', ts)"
    out = [
        f"CREATE MATERIALIZED VIEW {view} WITH (timescaledb.continuous) AS\n"
        f"SELECT {bucket} AS start, provider, symbol,\n"
        "       first(price, ts) AS open, max(price) AS high, min(price) AS low,\n"
        "       last(price, ts) AS close, sum(size) AS volume, count(*) AS trades\n"
        f"FROM {schema}.{TRADES.name}\n"
        f"GROUP BY {bucket}, provider, symbol\n"
        "WITH NO DATA",
        f"SELECT add_continuous_aggregate_policy('{view}', "
        f"start_offset => {interval_literal(CAGG_START_OFFSET)}, "
        "end_offset => INTERVAL '1 minute', schedule_interval => INTERVAL '1 minute', "
        "if_not_exists => TRUE)",
    ]
    if options.retention is not None:
        out.append(
            f"SELECT add_retention_policy('{view}', "
            f"drop_after => {interval_literal(options.retention)}, if_not_exists => TRUE)"
        )
    return out


def drop_chunks_statement(schema: str, table: Table) -> str:
    """Drop ``table``'s chunks wholly older than ``$1`` (a timestamptz); counts the chunks."""
    return (
        f"SELECT count(*) FROM drop_chunks('{schema}.{table.name}', older_than => $1::timestamptz)"
    )


def check_retention(options: Options) -> None:
    """Refuse a retention shorter than the continuous aggregate's refresh window."""
    if options.retention is not None and options.retention <= CAGG_START_OFFSET:
        raise ValueError(
            f"with TimescaleDB, retention must be longer than {CAGG_START_OFFSET} "
            "(the trades_1m refresh window), or trades are dropped before they are aggregated"
        )
