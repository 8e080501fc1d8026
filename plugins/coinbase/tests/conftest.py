from __future__ import annotations

from pathlib import Path

import pytest

#: The shared folder sits next to the repository: <repo>/../shared.
REPO = Path(__file__).resolve().parents[3]
CAPTURE = (REPO / ".." / "shared" / "data" / "coinbase-exchange-ws-2021-04-17.txt").resolve()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def capture() -> Path:
    if not CAPTURE.is_file():
        pytest.fail(
            f"the recorded Coinbase capture is missing: {CAPTURE} (it ships in ../shared/data "
            "next to the repository; the tests need it and do not skip)"
        )
    return CAPTURE
