from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from tickwire.testing import require_service
from tickwire_redis import RedisSettings, RedisSink

URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _reachable(client: aioredis.Redis) -> bool:
    try:
        await client.ping()
    except (RedisConnectionError, OSError):
        return False
    return True


@pytest.fixture
async def client() -> AsyncIterator[aioredis.Redis]:
    """A plain redis-py client on the real server (fails under CI when it is missing)."""
    client = aioredis.Redis.from_url(URL, socket_timeout=5)
    if not await _reachable(client):
        await client.aclose()
        require_service(f"Redis at {URL}", "PING failed")
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(client: aioredis.Redis) -> AsyncIterator[str]:
    """A key prefix no other test (or engineer) uses; its keys are deleted afterwards."""
    name = f"twtest-{uuid.uuid4().hex[:12]}"
    yield name
    keys = [k async for k in client.scan_iter(match=f"{name}:*", count=1000)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
def make_sink(prefix: str) -> Callable[..., RedisSink]:
    """Build a sink on the test's prefix: ``make_sink(retention="1h", ...)``."""

    def build(**keys: Any) -> RedisSink:
        return RedisSink(RedisSettings(url=URL, prefix=prefix, **keys))

    return build
