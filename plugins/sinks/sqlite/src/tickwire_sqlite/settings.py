"""``[[sinks]] type = "sqlite"``: where the database lives and what it keeps."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from tickwire.settings import Duration, SinkSettings


class SqliteSettings(SinkSettings):
    """The SQLite sink's keys; each can also come from ``TICKWIRE_SQLITE_<KEY>``.

    ``path`` is the database file (created with its folders if missing; relative paths are
    relative to the working directory). ``retention`` keeps that much history by event time
    (``None``: keep everything). ``book`` also stores order-book snapshots. ``synchronous`` is
    SQLite's durability level in WAL mode: ``normal`` may lose the last transactions on a power
    cut (never on a crash of the process) but is much faster; ``full`` syncs every commit.
    ``cache_size`` bounds SQLite's page cache (bytes): the process's memory grows by up to that
    much as the database is written and read, then stays there.
    """

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_SQLITE_")

    type: str = Field(default="sqlite", description="Sink name: 'sqlite'.")
    path: Path = Field(default=Path("tickwire.db"), description="The database file.")
    retention: Duration | None = Field(
        default=timedelta(days=30),
        description="Keep this much history by event time (None: keep all).",
    )
    book: bool = Field(
        default=False, description="Store order-book snapshots in table book_snapshots."
    )
    synchronous: Literal["normal", "full"] = Field(
        default="normal", description="SQLite's PRAGMA synchronous in WAL mode."
    )
    busy_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="How long to wait for another process holding the database's write lock.",
    )
    cache_size: int = Field(
        default=64 * 1024 * 1024,
        ge=64 * 1024,
        description="SQLite's page cache in bytes (PRAGMA cache_size); memory grows up to it.",
    )
