"""pytest fixtures for plugin authors: ``pytest_plugins = ["tickwire.testing.pytest_plugin"]``.

Fixtures:

* ``memory_sink``: a fresh :class:`~tickwire.testing.MemorySink`;
* ``make_pipeline``: builds a :class:`~tickwire.Pipeline` from ``[[sources]]`` tables with the
  memory sink attached, bootstrap off, dead letters under ``tmp_path``;
* ``anyio_backend``: ``"asyncio"`` (override it to run on trio too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire.testing.memory import MemorySink


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio."""
    return "asyncio"


@pytest.fixture
def memory_sink() -> MemorySink:
    """A sink that keeps everything it is given."""
    return MemorySink()


@pytest.fixture
def make_pipeline(memory_sink: MemorySink, tmp_path: Path) -> Callable[..., Pipeline]:
    """Build a pipeline for ``sources`` whose events land in ``memory_sink``."""

    def build(
        sources: Iterable[Mapping[str, Any]],
        *,
        intervals: Iterable[str] = ("1m",),
        plugins: Iterable[object] = (),
        entry_points: bool = True,
        **settings: Any,
    ) -> Pipeline:
        config = Settings(
            sources=[dict(s) for s in sources],
            sinks=settings.pop("sinks", []),
            candles={"intervals": list(intervals)},
            bootstrap={"days": 0},
            runner={
                "backoff_initial": "50ms",
                "backoff_max": "1s",
                "deadletter": str(tmp_path / "deadletter"),
                "spill_dir": str(tmp_path / "spill"),
                **settings.pop("runner", {}),
            },
            **settings,
        )
        return Pipeline(config, plugins=plugins, entry_points=entry_points, sinks=[memory_sink])

    return build
