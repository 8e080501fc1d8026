from __future__ import annotations

import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tickwire.testing import require_service

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared"
#: The test database of the end-to-end tests that write to PostgreSQL.
PG_DSN = os.environ.get("TICKWIRE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tickwire_cmd(*args: str) -> list[str]:
    """The installed ``tickwire`` command of this environment."""
    exe = Path(sys.executable).with_name("tickwire")
    return [str(exe), *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWIRE_")}
    env.update(extra)
    return env


@pytest.fixture
async def pg() -> AsyncIterator[asyncpg.Connection]:
    """A plain connection to the test database (fails under CI when it is missing)."""
    try:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        require_service(f"PostgreSQL at {PG_DSN}", exc)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def schema(pg: asyncpg.Connection) -> AsyncIterator[str]:
    """A PostgreSQL schema of this test, dropped afterwards."""
    name = f"tw_e2e_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        await pg.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
