"""Migrations: versioned, safe to run twice, safe with two sinks opening at once."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import asyncpg
import pytest

from tickwire_timescale import TimescaleSettings, TimescaleSink
from tickwire_timescale.schema import MIGRATIONS

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
    assert first == [(1, "postgres")]
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
        assert await _migrations(pg, schema_name) == [(1, "postgres")]
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
    assert await _migrations(pg, schema_name) == [(1, "postgres"), (2, "postgres")]
    assert "book_snapshots" in await _tables(pg, schema_name)
    assert [m.version for m in MIGRATIONS] == [1, 2]


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
