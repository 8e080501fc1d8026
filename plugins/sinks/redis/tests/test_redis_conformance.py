"""The sink conformance kit (tickwire.testing.check_sink) on a real Redis.

Redis is a cache, not a table: it keeps the newest quote per symbol (``latest_only``) and skips
trades and candles already older than its retention on write (``drops_stale_on_write``).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from tickwire.testing import check_sink
from tickwire.testing.sink import PROVIDER
from tickwire_redis import RedisSink

pytestmark = pytest.mark.anyio


async def test_conformance(
    client: aioredis.Redis, prefix: str, make_sink: Callable[..., RedisSink]
) -> None:
    async def count(kind: str) -> int:
        total = 0
        async for key in client.scan_iter(match=f"{prefix}:{kind}:{PROVIDER}:*", count=1000):
            if key.endswith(b":late"):
                continue
            total += int(
                await {
                    "trade": client.xlen,
                    "quote": client.exists,
                    "candle": client.zcard,
                    "gap": client.hlen,
                }[kind](key)
            )
        return total

    await check_sink(
        lambda: make_sink(retention="2d"),
        count,
        retention_s=2 * 86_400,
        latest_only={"quote"},
        drops_stale_on_write=True,
    )
