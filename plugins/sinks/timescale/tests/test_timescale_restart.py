"""PostgreSQL restarts mid-stream: the runner's retries save every batch, with no duplicate.

Stops and starts the machine's real PostgreSQL (``pg_ctlcluster``), holding the shared
``/tmp/tickwire-service-restart.lock`` for the whole stop/start and always starting it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import asyncpg
import pytest

from tickwire._runner.sink import RunningSink
from tickwire.events import NS_PER_SECOND, Trade
from tickwire.metrics import Metrics
from tickwire_timescale import TimescaleSettings, TimescaleSink

pytestmark = [pytest.mark.anyio, pytest.mark.service]

LOCK = "/tmp/tickwire-service-restart.lock"
N = 40_000
CHUNK = 200


def _pg_ctl(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.fixture
async def restart_schema(pg: asyncpg.Connection, dsn: str) -> AsyncIterator[str]:
    """A unique schema, dropped afterwards over a fresh connection (the restart kills ``pg``)."""
    if not Path("/etc/postgresql").is_dir():
        pytest.skip("no local PostgreSQL cluster to restart (pg_ctlcluster)")
    name = f"tw_test_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE")
        finally:
            await conn.close()


@contextlib.contextmanager
def asyncpg_orphaned_waiters() -> Iterator[list[dict[str, Any]]]:
    """Collect, instead of failing the test on, one known asyncpg (0.32) report.

    ``pg_ctl stop`` sends FATAL to idle connections; if the pool hands out such a connection
    just then, asyncpg's ``copy_in`` creates its waiter, then refuses to start the COPY
    (``InternalClientError: cannot switch to state 21``, which the runner retries) without
    clearing that waiter; the connection's loss later fails the waiter, which nobody awaits,
    and asyncio reports "Future exception was never retrieved". anyio's test runner would turn
    that report into this test's failure although every row is written once. Only that report
    is collected; any other goes to anyio's handler as before.
    """
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    seen: list[dict[str, Any]] = []

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if isinstance(context.get("exception"), asyncpg.ConnectionDoesNotExistError) and (
            "never retrieved" in str(context.get("message", ""))
        ):
            seen.append(context)
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
    try:
        yield seen
    finally:
        gc.collect()  # an orphaned waiter is reported when collected: before the handler goes
        loop.set_exception_handler(previous)


async def test_restart_mid_stream_loses_and_duplicates_nothing(
    restart_schema: str, dsn: str
) -> None:
    with asyncpg_orphaned_waiters():
        await _restart_mid_stream(restart_schema, dsn)


async def _restart_mid_stream(restart_schema: str, dsn: str) -> None:
    settings = TimescaleSettings(
        dsn=dsn,  # type: ignore[arg-type]
        schema=restart_schema,
        batch_size=1000,
        flush_interval="20ms",  # type: ignore[arg-type]
        buffer=N,
        connect_timeout="2s",  # type: ignore[arg-type]
    )
    metrics = Metrics()
    running = RunningSink(settings, TimescaleSink(settings), metrics)
    base = 1_796_000_000 * NS_PER_SECOND
    trades = [
        Trade("restart", f"S{i % 20}", base + i * 1000, base, Decimal(i), Decimal(1), None, str(i))
        for i in range(N)
    ]
    failed_while_down = False

    async def feed() -> None:
        for i in range(0, N, CHUNK):
            await running.put(trades[i : i + CHUNK])
            await anyio.sleep(0.002)

    lock = open(LOCK, "a")  # noqa: SIM115 - held across the whole stop/start below
    try:
        with anyio.fail_after(100):
            async with anyio.create_task_group() as tg:
                await tg.start(running.run)
                tg.start_soon(feed)
                while running.written < 5000:
                    await anyio.sleep(0.01)
                await anyio.to_thread.run_sync(fcntl.flock, lock, fcntl.LOCK_EX)
                try:
                    await anyio.to_thread.run_sync(_pg_ctl, "stop")
                    await anyio.sleep(2)  # events keep coming; the runner's buffer holds them
                    failed_while_down = not running.writable
                finally:
                    await anyio.to_thread.run_sync(_pg_ctl, "start")
                    fcntl.flock(lock, fcntl.LOCK_UN)
                while running.written < N:  # the runner retries until PostgreSQL is back
                    await anyio.sleep(0.05)
                running.close()
    finally:
        lock.close()

    assert failed_while_down, "the sink should have failed while PostgreSQL was down"
    errors = sum(v for (name, _), v in metrics.counters.items() if name == "sink_errors_total")
    assert errors >= 1
    assert running.written == N
    conn = await asyncpg.connect(dsn)
    try:
        total, distinct = await conn.fetchrow(
            f"SELECT count(*), count(DISTINCT trade_id) FROM {restart_schema}.trades"
        )
        ids = {int(r[0]) for r in await conn.fetch(f"SELECT trade_id FROM {restart_schema}.trades")}
    finally:
        await conn.close()
    assert (total, distinct) == (N, N)
    assert ids == set(range(N))
