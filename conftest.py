"""Shared by every test in the workspace."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _own_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder, so the runner's relative defaults (``spill/``,
    ``deadletter/``) never hold another test's files: a spill file left by one test would
    otherwise be replayed into the next one's sink."""
    monkeypatch.chdir(tmp_path)
