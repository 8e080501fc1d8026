"""tickwire's conformance kit against the fake Finnhub with a simulated market."""

from __future__ import annotations

import gc
from decimal import Decimal
from pathlib import Path

import pytest

import tickwire_finnhub
from tickwire.events import Trade
from tickwire.testing import check_provider
from tickwire_finnhub import SIMULATED_SYMBOLS
from tickwire_finnhub.testing import FakeFinnhub

pytestmark = pytest.mark.anyio


# Core's BackfillWorker never closes its gap queue's send stream (see the README, "Core changes
# needed"); the kit builds its own Pipeline, so the ResourceWarning is collected here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
async def test_conformance_kit(tmp_path: Path) -> None:
    async with FakeFinnhub(ping_interval=1.0) as fake:
        fake.simulate(rate_per_s=50, seed=7)
        report = await check_provider(
            {
                "provider": "finnhub",
                "symbols": list(SIMULATED_SYMBOLS),
                "api_key": fake.api_key,
                "ws_url": fake.ws_url,
                "rest_url": fake.rest_url,
            },
            fake,
            plugins=[tickwire_finnhub],
            entry_points=False,
            deadletter=tmp_path / "deadletter",
        )
        assert len(fake.connections) >= 2  # dropped and reopened, one at a time
    assert report.symbols_seen == set(SIMULATED_SYMBOLS)
    trades = [e for e in report.events if isinstance(e, Trade)]
    assert trades and all(t.size > Decimal(0) and t.trade_id for t in trades)
    gc.collect()
