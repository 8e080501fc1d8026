"""Helpers the nats tests share (a module name unique in the workspace)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
from nats.aio.client import Client
from pydantic_settings import SettingsConfigDict

from tickwire.events import Trade
from tickwire.hookspecs import hookimpl
from tickwire.protocols import Capabilities, Frame, Limits, ProviderInfo, ProviderRegistrar
from tickwire.settings import SourceSettings
from tickwire_nats import NatsSinkSettings, NatsSourceSettings

URL = "nats://127.0.0.1:4222"


class Bus:
    """A stream name and subject prefix no other test (or engineer) uses."""

    def __init__(self, nc: Client) -> None:
        tag = uuid.uuid4().hex[:12]
        self.nc = nc
        self.stream = f"TWTEST_{tag}"
        self.prefix = f"twtest_{tag}"

    def keys(self, **extra: Any) -> dict[str, Any]:
        return {"url": URL, "stream": self.stream, "subject_prefix": self.prefix, **extra}

    def sink_settings(self, **extra: Any) -> NatsSinkSettings:
        return NatsSinkSettings(type="nats", **self.keys(**extra))

    def source_settings(self, **extra: Any) -> NatsSourceSettings:
        return NatsSourceSettings(provider="nats", **self.keys(**extra))

    async def count(self) -> int:
        info = await self.nc.jetstream().stream_info(self.stream)
        return int(info.state.messages)


# ---- a deterministic feed for collectors -------------------------------------------------

#: Event time of the feed's first trade: the start of the hour before this process started
#: (recent, so no sink's retention removes it; fixed, so every collector in it agrees).
T0 = (time.time_ns() // 3_600_000_000_000 - 1) * 3_600_000_000_000


class FeedSettings(SourceSettings):
    """``provider = "feed"``: ``count`` trades per symbol, then silence."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_FEED_")

    count: int = 100
    #: Yield the frames in this many rounds with a pause between (0: no pause).
    pause: float = 0.0


def feed_trade(symbol: str, i: int) -> Trade:
    """The ``i``-th trade the feed produces for ``symbol`` (the same in every collector)."""
    return Trade(
        "feed",
        symbol,
        T0 + i * 1_000_000,
        T0 + i * 1_000_000 + 5,
        Decimal("100.25") + Decimal(i) / 100,
        Decimal("0.00100000"),
        "buy" if i % 2 else "sell",
        str(i),
    )


class _FeedConnection:
    def __init__(self, settings: FeedSettings, symbols: Sequence[str]) -> None:
        self.settings = settings
        self.symbols = symbols

    async def send(self, message: Frame) -> None:
        pass

    async def __aiter__(self) -> AsyncIterator[Frame]:
        for i in range(self.settings.count):
            for symbol in self.symbols:
                yield json.dumps({"s": symbol, "i": i})
            if self.settings.pause and i % 50 == 49:
                await anyio.sleep(self.settings.pause)
        await anyio.sleep_forever()


class _FeedConnector:
    def __init__(self, settings: FeedSettings) -> None:
        self.settings = settings

    @asynccontextmanager
    async def open(self, symbols: Sequence[str]) -> AsyncIterator[_FeedConnection]:
        yield _FeedConnection(self.settings, symbols)


def _feed_normalize(frame: Frame, received_ts: int) -> list[Trade]:
    data = json.loads(frame)
    return [feed_trade(data["s"], data["i"])]


class FeedPlugin:
    """A provider plugin serving the deterministic feed (registered with ``plugins=[...]``)."""

    @hookimpl
    def tickwire_register_providers(self, register: ProviderRegistrar) -> None:
        register(
            ProviderInfo(
                "feed", FeedSettings, Capabilities(trade_ids="unique"), Limits(keepalive=3600)
            )
        )

    @hookimpl
    def tickwire_connect(self, source: SourceSettings, info: ProviderInfo) -> object:
        return _FeedConnector(source) if isinstance(source, FeedSettings) else None

    @hookimpl
    def tickwire_normalize(self, source: SourceSettings, info: ProviderInfo) -> object:
        return _feed_normalize if isinstance(source, FeedSettings) else None


def base_settings(tmp: Path, **keys: Any) -> dict[str, Any]:
    """Settings keys every test pipeline shares: no candles, no bootstrap, fast retries."""
    return {
        "candles": {"intervals": []},
        "bootstrap": {"days": 0},
        "runner": {
            "backoff_initial": "50ms",
            "backoff_max": "500ms",
            "deadletter": str(tmp / "deadletter"),
            "spill_dir": str(tmp / "spill"),
            "shutdown_deadline": "5s",
        },
        **keys,
    }


def sqlite_count(path: Path, table: str = "trades") -> int:
    """Rows in ``table`` of the SQLite file (0 before the sink created it)."""
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def sqlite_trades(path: Path) -> list[tuple[str, str, str, int]]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        rows = db.execute("SELECT provider, symbol, trade_id, ts FROM trades").fetchall()
    return sorted(tuple(r) for r in rows)


async def wait_until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 30) -> None:
    """Poll ``predicate`` until true; fail the test after ``timeout`` seconds."""
    with anyio.fail_after(timeout):
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.05)
