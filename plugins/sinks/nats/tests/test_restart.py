"""The NATS server dies (SIGKILL) and comes back while a collector publishes and a writer
consumes: nothing is lost and nothing is stored twice.

The test runs a ``nats-server`` of its own (the machine's binary, JetStream with a store
directory in the test's tmp dir, a free port on 127.0.0.1) and kills and restarts *that*
process: the shared server on 4222, which other tests use at the same time, is never touched.
Marked ``nats_restart`` (deselect with ``-m "not nats_restart"``). Without the binary the test
is skipped; under ``CI`` it fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import nats
import pytest
from nats.aio.client import Client
from nats_helpers import (
    Bus,
    FeedPlugin,
    base_settings,
    feed_trade,
    sqlite_count,
    sqlite_trades,
    wait_until,
)

from tickwire.pipeline import Pipeline
from tickwire.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.service, pytest.mark.nats_restart]

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"


async def _quiet(exc: Exception) -> None:
    """nats-py logs every refused (re)connect with a traceback: expected here."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrivateNats:
    """A ``nats-server -js`` of this test: its own port and store directory."""

    store: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Start the server and wait until it accepts a client."""
        log = (self.store.parent / "nats-server.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
            )
        with anyio.fail_after(30):
            while True:
                assert self.proc.poll() is None, "nats-server exited at start"
                try:
                    nc = await nats.connect(
                        self.url, connect_timeout=1, allow_reconnect=False, error_cb=_quiet
                    )
                except Exception:
                    await anyio.sleep(0.05)
                    continue
                await nc.close()
                return

    def kill(self) -> None:
        """SIGKILL this test's server (by its own pid) and reap it."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


@pytest.fixture
async def private_nats(tmp_path: Path) -> AsyncIterator[PrivateNats]:
    if not os.access(NATS_SERVER, os.X_OK):
        if os.environ.get("CI"):
            pytest.fail(f"{NATS_SERVER} is required under CI (apt-get install nats-server)")
        pytest.skip(f"no nats-server binary at {NATS_SERVER}")
    server = PrivateNats(tmp_path / "nats-store", _free_port())
    await server.start()
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()


@pytest.fixture
async def private_nc(private_nats: PrivateNats) -> AsyncIterator[Client]:
    client = await nats.connect(
        private_nats.url, max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    yield client
    with contextlib.suppress(Exception):
        await client.close()


async def test_nats_server_killed_and_restarted_mid_stream_nothing_lost_or_doubled(
    private_nats: PrivateNats, private_nc: Client, tmp_path: Path
) -> None:
    symbols = ["BTC-USD", "ETH/USDT"]
    count = 600  # per symbol, a round of both every frame, a pause every 50 rounds
    bus = Bus(private_nc)
    keys = {**bus.keys(), "url": private_nats.url}
    collector = Pipeline(
        Settings(
            sources=[{"provider": "feed", "symbols": symbols, "count": count, "pause": 0.5}],
            sinks=[
                {
                    "type": "nats",
                    **keys,
                    "batch_size": 50,
                    "flush_interval": "20ms",
                    "ack_timeout": "2s",
                }
            ],
            **base_settings(tmp_path / "c"),
        ),
        plugins=[FeedPlugin()],
    )
    db = tmp_path / "history.db"
    writer = Pipeline(
        Settings(
            sources=[{"provider": "nats", **keys, "ack_wait": "2s", "fetch_timeout": "200ms"}],
            sinks=[{"type": "sqlite", "path": str(db), "batch_size": 50, "flush_interval": "20ms"}],
            **base_settings(tmp_path / "w"),
        )
    )
    total = len(symbols) * count
    async with collector, writer:
        await wait_until(lambda: sqlite_count(db) >= 100)
        private_nats.kill()
        down_at = sqlite_count(db)
        await private_nats.start()
        await wait_until(lambda: private_nc.is_connected)
        at_restart = await bus.count()
        await wait_until(lambda: sqlite_count(db) >= total, timeout=90)

        async def settled() -> bool:
            info = await private_nc.jetstream().consumer_info(bus.stream, "tickwire-writer")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await wait_until(settled, timeout=60)
        stored = await bus.count()
    assert down_at < total and at_restart < total  # died mid-stream, publishing went on
    assert sqlite_trades(db) == sorted(
        (t.provider, t.symbol, str(t.trade_id), t.ts)
        for s in symbols
        for t in (feed_trade(s, i) for i in range(count))
    )
    assert stored == total  # the retried batches' copies were dropped by message id
