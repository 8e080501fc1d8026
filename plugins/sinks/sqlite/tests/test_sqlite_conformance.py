"""The sink conformance kit (tickwire.testing.check_sink) on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import anyio
import pytest

from tickwire.testing import check_sink
from tickwire_sqlite.settings import SqliteSettings
from tickwire_sqlite.sink import SqliteSink

TABLES = {"trade": "trades", "quote": "quotes", "candle": "candles", "gap": "gaps"}


@pytest.mark.anyio
async def test_sqlite_passes_the_sink_conformance_kit(tmp_path: Path) -> None:
    path = tmp_path / "kit.db"
    settings = SqliteSettings(type="sqlite", path=path, retention="30d")

    async def count(kind: str) -> int:
        def query() -> int:
            with sqlite3.connect(path) as con:
                sql = f"SELECT count(*) FROM {TABLES[kind]} WHERE provider = 'conformance'"
                return int(con.execute(sql).fetchone()[0])

        return await anyio.to_thread.run_sync(query)

    await check_sink(lambda: SqliteSink(settings), count, retention_s=30 * 86_400)
