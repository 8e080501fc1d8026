from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from jsonfeed import FakeFeed

pytest_plugins = ["tickwire.testing.pytest_plugin"]


@pytest.fixture
async def feed() -> AsyncIterator[FakeFeed]:
    async with FakeFeed().running() as server:
        yield server
