from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire.testing import MemorySink


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def make_pipeline(tmp_path: Path) -> Callable[..., Pipeline]:
    """A real pipeline for one source (bootstrap off), events into ``sink``."""

    def build(
        source: Mapping[str, Any],
        *,
        sink: MemorySink | None = None,
        sinks: list[dict[str, Any]] | None = None,
        intervals: list[str] | None = None,
    ) -> Pipeline:
        settings = Settings(
            sources=[dict(source)],
            sinks=sinks or [],
            candles={"intervals": intervals or []},
            bootstrap={"days": 0},
            runner={
                "backoff_initial": "50ms",
                "backoff_max": "500ms",
                "deadletter": str(tmp_path / "deadletter"),
            },
        )
        return Pipeline(settings, sinks=[sink] if sink is not None else [])

    return build
