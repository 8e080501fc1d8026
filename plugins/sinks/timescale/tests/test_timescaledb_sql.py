"""The TimescaleDB back end, checked as golden SQL.

TimescaleDB is not packaged for the Debian machines these tests run on, so the hypertable path
cannot be executed here. What is checked instead: the exact statements a new schema gets on
TimescaleDB (``golden/timescaledb_schema.sql``, reviewed by hand against the TimescaleDB docs:
``create_hypertable`` with ``by_range`` (2.13+), ``add_compression_policy``,
``add_retention_policy``, a continuous aggregate ``WITH NO DATA`` so it can be created inside
the migration's transaction), the properties a hypertable needs (every unique key holds the time
column; no declarative partitioning), and that the plain-SQL part of those statements runs on
the real PostgreSQL.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest

from tickwire_timescale import timescaledb
from tickwire_timescale.schema import MIGRATIONS, TABLES, TRADES, Options

GOLDEN = Path(__file__).parent / "golden" / "timescaledb_schema.sql"
OPTIONS = Options(
    book=True,
    retention=timedelta(days=30),
    chunk_interval=timedelta(days=1),
    compress_after=timedelta(days=7),
)


def _statements(schema: str = "tickwire") -> list[tuple[int, str]]:
    return [
        (m.version, s) for m in MIGRATIONS for s in m.statements(schema, "timescaledb", OPTIONS)
    ]


def _render() -> str:
    out: list[str] = []
    for m in MIGRATIONS:
        out.append(f"-- migration {m.version}: {m.name}")
        out += [s + ";" for s in m.statements("tickwire", "timescaledb", OPTIONS)]
    return "\n\n".join(out) + "\n"


def test_statements_match_the_reviewed_golden_file() -> None:
    if os.environ.get("TICKWIRE_UPDATE_GOLDEN"):
        GOLDEN.write_text(_render())
    assert _render() == GOLDEN.read_text()


def test_every_time_table_becomes_a_compressed_hypertable_with_retention() -> None:
    sql = [s for _, s in _statements()]
    for name in ("trades", "quotes", "candles", "book_snapshots"):
        time_col = TABLES[name].time_column
        assert (
            f"SELECT create_hypertable('tickwire.{name}', by_range('{time_col}', "
            "INTERVAL '1 day'), if_not_exists => TRUE)"
        ) in sql
        assert any(
            s.startswith(f"ALTER TABLE tickwire.{name} SET (timescaledb.compress") for s in sql
        )
        assert (
            f"SELECT add_compression_policy('tickwire.{name}', "
            "compress_after => INTERVAL '7 days', if_not_exists => TRUE)"
        ) in sql
        assert (
            f"SELECT add_retention_policy('tickwire.{name}', "
            "drop_after => INTERVAL '30 days', if_not_exists => TRUE)"
        ) in sql
    assert not any("create_hypertable('tickwire.gaps'" in s for s in sql)
    assert not any("PARTITION BY" in s for s in sql)  # hypertables cannot be partitioned too


def test_unique_keys_hold_the_time_column() -> None:
    for table in TABLES.values():
        if table.partitioned:
            assert table.time_column in table.key, table.name


def test_continuous_aggregate_of_one_minute_candles() -> None:
    cagg = timescaledb.continuous_aggregate_statements("s", OPTIONS)
    assert cagg[0].startswith("CREATE MATERIALIZED VIEW s.trades_1m WITH (timescaledb.continuous)")
    assert "time_bucket(INTERVAL '1 minute', ts) AS start" in cagg[0]
    assert "first(price, ts) AS open" in cagg[0] and "last(price, ts) AS close" in cagg[0]
    assert cagg[0].endswith("WITH NO DATA")
    assert "start_offset => INTERVAL '2 hours'" in cagg[1]
    assert cagg[2] == (
        "SELECT add_retention_policy('s.trades_1m', drop_after => INTERVAL '30 days', "
        "if_not_exists => TRUE)"
    )


def test_no_retention_means_no_retention_policy() -> None:
    options = Options(retention=None)
    sql = timescaledb.hypertable_statements("s", TRADES, options)
    sql += timescaledb.continuous_aggregate_statements("s", options)
    assert not any("add_retention_policy" in s for s in sql)


def test_retention_shorter_than_the_aggregate_window_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than 2:00:00"):
        timescaledb.check_retention(Options(retention=timedelta(hours=1)))
    timescaledb.check_retention(Options(retention=timedelta(days=36500)))


def test_interval_literals_are_exact() -> None:
    assert timescaledb.interval_literal(timedelta(days=36500)) == "INTERVAL '36500 days'"
    assert timescaledb.interval_literal(timedelta(days=1)) == "INTERVAL '1 day'"
    assert timescaledb.interval_literal(timedelta(hours=12)) == "INTERVAL '12 hours'"
    assert timescaledb.interval_literal(timedelta(seconds=90)) == "INTERVAL '90 seconds'"
    assert (
        timescaledb.interval_literal(timedelta(milliseconds=1500))
        == "INTERVAL '1500000 microseconds'"
    )


def test_drop_chunks_statement() -> None:
    assert timescaledb.drop_chunks_statement("s", TRADES) == (
        "SELECT count(*) FROM drop_chunks('s.trades', older_than => $1::timestamptz)"
    )


@pytest.mark.anyio
@pytest.mark.service
async def test_plain_sql_part_runs_on_postgresql(pg: asyncpg.Connection, schema_name: str) -> None:
    """The tables TimescaleDB would get are valid PostgreSQL (only the TimescaleDB calls are not
    runnable here)."""
    await pg.execute(f"CREATE SCHEMA {schema_name}")
    for _, statement in _statements(schema_name):
        if statement.startswith("CREATE TABLE"):
            await pg.execute(statement)
    count = await pg.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema_name)
    assert count == 5
