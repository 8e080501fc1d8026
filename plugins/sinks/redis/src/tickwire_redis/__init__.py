"""tickwire-redis: the hot cache sink (latest quote and book, recent candles and trades, pub/sub).

This module holds only the hook implementations; the sink is in :mod:`tickwire_redis.sink`, its
settings in :mod:`tickwire_redis.settings` and the key layout and scripts in
:mod:`tickwire_redis.schema`.
"""

from __future__ import annotations

from tickwire.hookspecs import hookimpl
from tickwire.protocols import SinkInfo, SinkRegistrar
from tickwire.settings import SinkSettings
from tickwire_redis.settings import RedisSettings as RedisSettings
from tickwire_redis.sink import RedisSink as RedisSink

__version__ = "0.1.0"


@hookimpl
def tickwire_register_sinks(register: SinkRegistrar) -> None:
    """Register the ``redis`` sink."""
    register(
        SinkInfo(
            "redis",
            RedisSettings,
            "Redis hot cache: latest quote and book, recent candles and trades, pub/sub",
        )
    )


@hookimpl
def tickwire_sink(sink: SinkSettings) -> RedisSink | None:
    """Build the Redis sink for a ``[[sinks]] type = "redis"`` entry."""
    if not isinstance(sink, RedisSettings):
        return None
    return RedisSink(sink)


__all__ = ("RedisSettings", "RedisSink", "tickwire_register_sinks", "tickwire_sink")
