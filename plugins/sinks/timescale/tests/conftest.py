from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from tickwire.testing import require_service
from tickwire_timescale import TimescaleSettings, TimescaleSink

#: The machines' PostgreSQL (trust auth); override with TICKWIRE_TEST_PG_DSN.
DSN = os.environ.get("TICKWIRE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def dsn() -> str:
    """The test database's URL."""
    return DSN


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def pg() -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test database (fails under CI when PostgreSQL is missing)."""
    try:
        conn = await asyncpg.connect(DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require_service(f"PostgreSQL at {DSN}", exc)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def schema_name(pg: asyncpg.Connection) -> AsyncIterator[str]:
    """A unique schema for one test, dropped afterwards."""
    name = f"tw_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        await pg.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")


@pytest.fixture
def make_settings(schema_name: str) -> Callable[..., TimescaleSettings]:
    def make(**overrides: object) -> TimescaleSettings:
        values: dict[str, object] = {"dsn": DSN, "schema": schema_name, "timescaledb": "auto"}
        values.update(overrides)
        return TimescaleSettings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
async def sink(make_settings: Callable[..., TimescaleSettings]) -> AsyncIterator[TimescaleSink]:
    async with TimescaleSink(make_settings()) as opened:
        yield opened
