"""``[[sinks]] type = "redis"``: where Redis is, how keys are named and how much is kept."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from tickwire.settings import Duration, SinkSettings


class RedisSettings(SinkSettings):
    """The Redis sink's keys; each can also come from ``TICKWIRE_REDIS_<KEY>``.

    ``retention`` is measured on event time: trades and candles older than ``now - retention``
    are trimmed, and every key the sink writes expires ``retention`` after its last write, so
    memory stays bounded however long the pipeline runs. The password goes in ``password`` (or
    ``TICKWIRE_REDIS_PASSWORD``), never in ``url``.
    """

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_REDIS_")

    type: str = Field(default="redis", description="Sink name: 'redis'.")
    url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="redis://host:port/db, rediss:// for TLS or unix:///path.sock",
    )
    password: SecretStr | None = Field(default=None, description="Redis AUTH password.")
    username: str | None = Field(default=None, description="Redis ACL user (with password).")
    prefix: str = Field(default="tickwire", min_length=1, description="First part of every key.")
    retention: Duration = Field(
        default=timedelta(days=1),
        description="Keep this much by event time; also the TTL of every key.",
    )
    book_depth: int = Field(default=10, ge=1, description="Levels per side in the book hash.")
    candles_keep: int = Field(
        default=1440, ge=1, description="Most candles kept per symbol and interval."
    )
    trades_keep: int = Field(
        default=100_000, ge=1, description="Most trades kept per symbol stream (MAXLEN ~)."
    )
    publish: bool = Field(default=True, description="PUBLISH every write on its channel too.")
    socket_timeout: Duration = Field(
        default=timedelta(seconds=5),
        description="Give up on a connect or a reply after this long (the runner retries).",
    )

    @field_validator("url")
    @classmethod
    def _no_password_in_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("use a redis://, rediss:// or unix:// URL")
        if parts.password:
            raise ValueError(
                "do not put the password in url: set password (or TICKWIRE_REDIS_PASSWORD)"
            )
        return value

    @field_validator("retention")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta:
        if value is None or value.total_seconds() < 0.001:
            raise ValueError("Redis keeps a bounded window: give a retention of at least 1ms")
        return value

    @field_validator("prefix")
    @classmethod
    def _no_trailing_colon(cls, value: str) -> str:
        return value.rstrip(":") or value
