"""The core's provider contract (tickwire.testing.check_provider) against the fake Exchange."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickwire.events import Gap, Trade
from tickwire.testing.provider import check_provider
from tickwire_coinbase.testing import FakeCoinbase

pytestmark = pytest.mark.anyio


async def test_provider_contract(tmp_path: Path) -> None:
    async with FakeCoinbase(["BTC-USD", "ETH-USD"], heartbeat_interval=0.2) as fake:
        fake.simulate(rate_per_s=50)
        source = {
            "provider": "coinbase",
            "symbols": ["BTC-USD", "ETH-USD"],
            "channels": ["trades", "quotes", "book"],
            "ws_url": fake.ws_url,
            "rest_url": fake.rest_url,
        }
        report = await check_provider(source, fake, deadletter=tmp_path / "dead")
    trades = [e for e in report.events if isinstance(e, Trade)]
    assert {t.symbol for t in trades} == {"BTC-USD", "ETH-USD"}
    assert report.reconnects >= 1
    # nothing is missing on a healthy feed apart from the disconnect window itself
    assert all(g.reason == "disconnect" for g in report.events if isinstance(g, Gap))
