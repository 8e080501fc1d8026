"""``[[sinks]] type = "timescale"``: where the database is and what it keeps."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from tickwire.settings import Duration, SinkSettings

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")


class TimescaleSettings(SinkSettings):
    """The PostgreSQL / TimescaleDB sink's keys; each can also come from
    ``TICKWIRE_TIMESCALE_<KEY>``.

    ``dsn`` is a libpq URL (``postgresql://user:password@host:5432/db``); it is a secret
    because it may hold a password. ``schema`` is the PostgreSQL schema the tables live in
    (created if missing). ``retention`` keeps that much history by event time, dropping whole
    daily partitions (or TimescaleDB chunks). ``timescaledb`` picks the back end: ``auto`` uses
    TimescaleDB when the extension is installed in the database (or can be created), ``off``
    always uses plain PostgreSQL partitions, ``on`` refuses to start without the extension.
    """

    model_config = SettingsConfigDict(
        extra="forbid", env_prefix="TICKWIRE_TIMESCALE_", populate_by_name=True
    )

    type: str = Field(default="timescale", description="Sink name: 'timescale'.")
    dsn: SecretStr = Field(
        default=SecretStr("postgresql://postgres@127.0.0.1:5432/postgres"),
        description="libpq connection URL (may hold a password; never logged).",
    )
    # ``schema`` would shadow pydantic's BaseModel.schema(), so the attribute is ``db_schema``
    # and the key users write is ``schema``.
    db_schema: str = Field(
        default="tickwire",
        validation_alias=AliasChoices("schema", "db_schema", "TICKWIRE_TIMESCALE_SCHEMA"),
        description="PostgreSQL schema holding the tables (lower-case identifier).",
    )
    retention: Duration | None = Field(
        default=timedelta(days=30),
        description="Keep this much history by event time (None: keep all).",
    )
    book: bool = Field(default=False, description="Store order-book snapshots (book_snapshots).")
    timescaledb: Literal["auto", "on", "off"] = Field(
        default="auto", description="Use TimescaleDB hypertables when the extension is there."
    )
    pool_size: int = Field(default=2, ge=1, le=32, description="Connections in the pool.")
    premake_days: int = Field(
        default=3, ge=0, le=60, description="Daily partitions created ahead of today (plain PG)."
    )
    chunk_interval: Duration = Field(
        default=timedelta(days=1), description="TimescaleDB chunk length."
    )
    compress_after: Duration = Field(
        default=timedelta(days=7), description="TimescaleDB: compress chunks older than this."
    )
    connect_timeout: Duration = Field(
        default=timedelta(seconds=10), description="Longest wait for a connection."
    )
    command_timeout: Duration = Field(
        default=timedelta(seconds=60), description="Longest wait for one statement."
    )

    @field_validator("dsn")
    @classmethod
    def _libpq_url(cls, value: SecretStr) -> SecretStr:
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in ("postgresql", "postgres"):
            raise ValueError(
                "dsn must be a libpq URL: postgresql://user:password@host:5432/database"
            )
        return value

    @field_validator("db_schema")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if not _IDENT.match(value):
            raise ValueError(
                "schema must be a lower-case SQL identifier: letters, digits and '_', "
                "not starting with a digit, at most 48 characters"
            )
        return value

    @field_validator("chunk_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("chunk_interval must be positive")
        return value
