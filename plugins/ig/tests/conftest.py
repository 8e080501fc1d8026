from __future__ import annotations

from typing import Any

import pytest

EPIC = "CS.D.EURUSD.CFD.IP"
TRADED = "IX.D.FTSE.DAILY.IP"

#: SDK timers short enough that a dead socket is noticed in about a second.
FAST = {
    "keepalive": "300ms",
    "stalled_timeout": "300ms",
    "reconnect_timeout": "500ms",
    "heartbeat_every": "200ms",
    "rest_requests_per_minute": 6000,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def source_for(fake: Any, symbols: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A ``[[sources]]`` table for provider ``ig`` pointing at ``fake``."""
    return {
        "provider": "ig",
        "symbols": symbols or [EPIC],
        **fake.source_keys(),
        **FAST,
        **extra,
    }


_HERE = __file__.rsplit("/", 1)[0]
#: lightstreamer-client-lib 1.0.3 (the line IG's servers accept) passes ``ssl=None`` to aiohttp,
#: which aiohttp >= 3.10 deprecates; with ``filterwarnings = error`` that warning would kill
#: the SDK's websocket on its own thread.
SDK_SSL_WARNING = "ignore:ssl=None is deprecated:DeprecationWarning"
#: 1.0.3's ``WsClientPy.dispose`` registers an ``async def`` as a plain future callback when a
#: socket is disposed before it opened (a known SDK quirk; harmless, fixed in 2.x).
SDK_DISPOSE_WARNING = (
    "ignore:coroutine 'WsClientPy.dispose.<locals>.on_done_callback':RuntimeWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if str(item.path).startswith(_HERE):
            item.add_marker(pytest.mark.filterwarnings(SDK_SSL_WARNING))
            item.add_marker(pytest.mark.filterwarnings(SDK_DISPOSE_WARNING))


@pytest.fixture(autouse=True)
def _collect_garbage() -> Any:
    """Collect each test's garbage before it ends, so unclosed resources are blamed on it."""
    import gc

    yield
    gc.collect()
