from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def tickwire_cmd(*args: str) -> list[str]:
    """The installed ``tickwire`` command of this environment."""
    exe = Path(sys.executable).with_name("tickwire")
    return [str(exe), *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKWIRE_")}
    env.update(extra)
    return env
