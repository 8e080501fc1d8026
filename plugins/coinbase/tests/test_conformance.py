"""The core's provider contract (tickwire.testing.check_provider) against the fake Exchange."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickwire.events import Gap, Trade
from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire.testing.memory import MemorySink
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


async def test_pipeline_detects_and_backfills_withheld_trades(tmp_path: Path) -> None:
    """End to end: a hole in the trade ids on the wire is found by the core and filled over REST."""
    async with FakeCoinbase(["BTC-USD"], heartbeat_interval=0.2, history_days=0.2) as fake:
        settings = Settings(
            sources=[
                {
                    "provider": "coinbase",
                    "symbols": ["BTC-USD"],
                    "ws_url": fake.ws_url,
                    "rest_url": fake.rest_url,
                }
            ],
            sinks=[],
            bootstrap={"days": 0},
            runner={"deadletter": str(tmp_path / "dead")},
        )
        memory = MemorySink()
        async with Pipeline(settings, entry_points=True, sinks=[memory]):
            await fake.wait_subscribed()
            await fake.trade("BTC-USD", "100", "1")
            fake.withhold_trades("BTC-USD", 3)
            hidden = [await fake.trade("BTC-USD", f"{101 + i}", "1") for i in range(3)]
            await fake.trade("BTC-USD", "200", "1")
            wanted = {str(t.trade_id) for t in hidden}

            def filled(m: MemorySink) -> bool:
                ids = {e.trade_id for e in m.events if isinstance(e, Trade)}
                return wanted <= ids

            await memory.wait_for(filled, 10)
        gaps = [e for e in memory.events if isinstance(e, Gap) and e.kind == "trades"]
        assert any(g.reason == "sequence" for g in gaps)
