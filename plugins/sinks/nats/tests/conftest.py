from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from tickwire.testing import require_service

# Helper modules (nats_helpers) live beside this file: --import-mode=importlib does not
# put it on sys.path.
sys.path.insert(0, str(Path(__file__).parent))

from nats_helpers import URL, Bus


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "nats_restart: kills and restarts a nats-server of the test's own (never the shared one)",
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def nc() -> AsyncIterator[Client]:
    """A plain nats-py client on the real server (fails under CI when it is missing)."""
    try:
        client = await nats.connect(URL, connect_timeout=2, allow_reconnect=False)
    except Exception as exc:
        require_service(f"NATS at {URL}", exc)
    yield client
    await client.close()


@pytest.fixture
async def bus(nc: Client) -> AsyncIterator[Bus]:
    """A unique stream for this test, deleted afterwards."""
    bus = Bus(nc)
    yield bus
    with contextlib.suppress(NotFoundError):
        await nc.jetstream().delete_stream(bus.stream)


@pytest.fixture
def make_bus(nc: Client) -> Callable[[], Bus]:
    return lambda: Bus(nc)
