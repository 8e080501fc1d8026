"""Migrations: versioned, safe to run twice, safe with two sinks opening at once."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import asyncpg
import msgspec
import pytest

from tickwire.events import NS_PER_SECOND, Gap
from tickwire_timescale import TimescaleSettings, TimescaleSink
from tickwire_timescale.schema import MIGRATIONS, Options

pytestmark = [pytest.mark.anyio, pytest.mark.service]


async def _tables(pg: asyncpg.Connection, schema: str) -> list[str]:
    rows = await pg.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " ORDER BY 1",
        schema,
    )
    return [r[0] for r in rows]


async def _migrations(pg: asyncpg.Connection, schema: str) -> list[tuple[int, str]]:
    rows = await pg.fetch(
        f"SELECT version, backend FROM {schema}.tickwire_migrations ORDER BY version"
    )
    return [(r[0], r[1]) for r in rows]


async def test_open_twice_is_a_no_op(
    pg: asyncpg.Connection, schema_name: str, make_settings: Callable[..., TimescaleSettings]
) -> None:
    async with TimescaleSink(make_settings()) as sink:
        assert sink.backend == "postgres"  # no TimescaleDB on these machines
    first = await _migrations(pg, schema_name)
    assert first == [(1, "postgres"), (3, "postgres")]
    async with TimescaleSink(make_settings()):
        pass
    assert await _migrations(pg, schema_name) == first
    assert await _tables(pg, schema_name) == [
        "candles",
        "gaps",
        "quotes",
        "tickwire_migrations",
        "trades",
    ]


async def test_two_sinks_opening_at_once(
    pg: asyncpg.Connection, schema_name: str, make_settings: Callable[..., TimescaleSettings]
) -> None:
    sinks = [TimescaleSink(make_settings()) for _ in range(4)]
    try:
        async with anyio.create_task_group() as tg:
            for sink in sinks:
                tg.start_soon(sink.open)
        assert await _migrations(pg, schema_name) == [(1, "postgres"), (3, "postgres")]
        assert {s.backend for s in sinks} == {"postgres"}
    finally:
        for sink in sinks:
            await sink.aclose()


async def test_book_migration_applies_when_turned_on(
    pg: asyncpg.Connection, schema_name: str, make_settings: Callable[..., TimescaleSettings]
) -> None:
    async with TimescaleSink(make_settings()):
        pass
    assert "book_snapshots" not in await _tables(pg, schema_name)
    async with TimescaleSink(make_settings(book=True)):
        pass
    assert await _migrations(pg, schema_name) == [
        (1, "postgres"),
        (2, "postgres"),
        (3, "postgres"),
    ]
    assert "book_snapshots" in await _tables(pg, schema_name)
    assert [m.version for m in MIGRATIONS][:3] == [1, 2, 3]


async def test_a_version_1_schema_migrates_and_then_stores_failed_gaps(
    pg: asyncpg.Connection, schema_name: str, make_settings: Callable[..., TimescaleSettings]
) -> None:
    # The schema as tickwire-timescale wrote it before migration 3, with a gap in it.
    first = MIGRATIONS[0]
    await pg.execute(f"CREATE SCHEMA {schema_name}")
    for statement in first.statements(schema_name, "postgres", Options()):
        await pg.execute(statement)
    await pg.execute(
        f"CREATE TABLE {schema_name}.tickwire_migrations (version integer PRIMARY KEY,"
        " name text NOT NULL, backend text NOT NULL, applied_at timestamptz NOT NULL"
        " DEFAULT now())"
    )
    await pg.execute(
        f"INSERT INTO {schema_name}.tickwire_migrations VALUES (1, $1, 'postgres')", first.name
    )
    start = 1_700_000_000 * NS_PER_SECOND
    old = Gap("p", "X", "trades", start, start + NS_PER_SECOND, "sequence", "empty")
    await pg.execute(
        f"INSERT INTO {schema_name}.gaps VALUES ('p', 'X', 'trades', to_timestamp($1),"
        " to_timestamp($2), 'sequence', 'empty')",
        start // NS_PER_SECOND,
        start // NS_PER_SECOND + 1,
    )
    failed = Gap(
        "p", "X", "candles:1m", start, start + 60 * NS_PER_SECOND, "candle", "failed", "HTTP 403"
    )
    async with TimescaleSink(make_settings()) as sink:
        assert await sink.gaps() == [old]  # kept, with no detail
        await sink.write_batch([failed])
        assert await sink.gaps(status="failed") == [failed]
        await sink.write_batch([msgspec.structs.replace(failed, status="open", detail=None)])
        assert await sink.gaps(status="failed") == [failed]  # found again: still says why
    assert await _migrations(pg, schema_name) == [(1, "postgres"), (3, "postgres")]


async def test_column_types_are_exact(
    pg: asyncpg.Connection, schema_name: str, sink: TimescaleSink
) -> None:
    rows = await pg.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = $1 AND table_name IN ('trades', 'candles')"
        " ORDER BY table_name, ordinal_position",
        schema_name,
    )
    types = {(r[0], r[1]): r[2] for r in rows}
    assert [c for t, c in types if t == "trades"] == [
        "provider",
        "symbol",
        "ts",
        "received_ts",
        "price",
        "size",
        "side",
        "trade_id",
    ]
    assert types[("trades", "ts")] == "timestamp with time zone"
    assert types[("trades", "price")] == "numeric"
    assert types[("candles", "start")] == "timestamp with time zone"
    assert types[("candles", "volume")] == "numeric"


async def test_partitions_are_made_ahead(
    pg: asyncpg.Connection, schema_name: str, make_settings: Callable[..., TimescaleSettings]
) -> None:
    async with TimescaleSink(make_settings(premake_days=2)):
        pass
    count = await pg.fetchval(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent"
        " JOIN pg_namespace n ON n.oid = p.relnamespace"
        " WHERE n.nspname = $1 AND p.relname = 'trades'",
        schema_name,
    )
    assert count == 3  # today and the two days after


async def test_timescaledb_on_without_the_extension_is_refused(
    pg: asyncpg.Connection, make_settings: Callable[..., TimescaleSettings]
) -> None:
    available = await pg.fetchval(
        "SELECT count(*) FROM pg_available_extensions WHERE name = 'timescaledb'"
    )
    if available:
        pytest.skip("this server has TimescaleDB; the refusal cannot be shown here")
    with pytest.raises(RuntimeError, match="timescaledb extension is not available"):
        await TimescaleSink(make_settings(timescaledb="on")).open()
