"""Settings of the ``nats`` sink (collectors) and the ``nats`` provider (writers).

Both read ``TICKWIRE_NATS_<KEY>`` from the environment (``TICKWIRE_NATS_URL``,
``TICKWIRE_NATS_PASSWORD`` …), which overrides the file. Secrets are :class:`SecretStr`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from tickwire.settings import Duration, SinkSettings, SourceSettings

_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class _Bus(BaseModel):
    """The keys a collector and a writer share: the server, credentials and the stream."""

    url: str = Field(
        default="nats://127.0.0.1:4222",
        description="NATS server URL; several servers of a cluster separated by commas.",
    )
    user: str | None = Field(default=None, description="User name (with password).")
    password: SecretStr | None = Field(default=None, description="Password (secret).")
    token: SecretStr | None = Field(default=None, description="Auth token (secret).")
    creds: str | None = Field(default=None, description="Path of a .creds file (NATS JWT auth).")
    stream: str = Field(default="TICKWIRE", description="JetStream stream name.")
    subject_prefix: str = Field(
        default="tickwire", description="First subject token: <prefix>.<kind>.<provider>.<symbol>."
    )
    manage_stream: bool = Field(
        default=True,
        description="Create the stream when it is missing and check it when present.",
    )
    max_age: Duration = Field(
        default=timedelta(days=3),
        description="How long the stream keeps a message (by arrival time); 0 keeps forever.",
    )
    max_bytes: int = Field(default=-1, description="Stream size limit in bytes (-1: none).")
    replicas: int = Field(
        default=1, ge=1, le=5, description="Copies of the stream in a JetStream cluster (1, 3, 5)."
    )
    duplicate_window: Duration = Field(
        default=timedelta(minutes=2),
        description="How long JetStream remembers message ids to drop duplicates.",
    )
    storage: Literal["file", "memory"] = Field(default="file", description="Stream storage.")

    @field_validator("stream")
    @classmethod
    def _stream_name(cls, value: str) -> str:
        if not value or not set(value) <= _TOKEN_CHARS:
            raise ValueError("stream names use letters, digits, '-' and '_' only")
        return value

    @field_validator("subject_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        tokens = value.split(".")
        if not value or any(not t or not set(t) <= _TOKEN_CHARS for t in tokens):
            raise ValueError(
                "subject_prefix is one or more tokens of letters, digits, '-' and '_', "
                "joined by '.'"
            )
        return value


class NatsSinkSettings(_Bus, SinkSettings):
    """``[[sinks]] type = "nats"``: publish every event to JetStream (a collector)."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_NATS_")

    ack_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="Longest wait for JetStream's acks of one batch before it is retried.",
    )
    max_pending: int = Field(
        default=4000, ge=1, description="Most publishes in flight, waiting for their ack."
    )


class NatsSourceSettings(_Bus, SourceSettings):
    """``[[sources]] provider = "nats"``: consume the stream durably (a writer).

    ``symbols`` are subject filters below ``subject_prefix`` (``">"``: everything;
    ``"trade.coinbase.>"``: Coinbase trades). Each filter gets its own durable consumer.
    ``channels`` is not used: the filter selects what a writer consumes.
    """

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_NATS_")

    symbols: list[str] = Field(
        default=[">"], min_length=1, description="Subject filters below subject_prefix."
    )
    channels: list[Literal["trades", "quotes", "book", "candles"]] = Field(
        default=["trades", "quotes", "book", "candles"],
        min_length=1,
        description="Not used by the nats provider (the filters select).",
    )
    durable: str = Field(
        default="tickwire-writer",
        description="Durable consumer name; writers with the same name share the work.",
    )
    batch: int = Field(default=1000, ge=1, description="Messages per fetch.")
    fetch_timeout: Duration = Field(
        default=timedelta(seconds=1), description="Longest wait of one fetch on an idle stream."
    )
    ack_wait: Duration = Field(
        default=timedelta(seconds=60),
        description="An unacknowledged message is delivered again after this long.",
    )
    max_ack_pending: int = Field(
        default=50_000,
        ge=1,
        description="Most messages delivered but not yet acknowledged, over all writers.",
    )
    max_deliver: int = Field(
        default=-1, description="Most deliveries of one message (-1: until acknowledged)."
    )

    @field_validator("durable")
    @classmethod
    def _durable(cls, value: str) -> str:
        if not value or not set(value) <= _TOKEN_CHARS:
            raise ValueError("durable names use letters, digits, '-' and '_' only")
        return value


__all__ = ("NatsSinkSettings", "NatsSourceSettings")
