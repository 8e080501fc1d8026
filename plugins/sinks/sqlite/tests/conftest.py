from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The tests import their helper module (sqlite_strategies, a name unique in the workspace)
# from this folder: pytest runs with --import-mode=importlib, which does not add it to sys.path.
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
