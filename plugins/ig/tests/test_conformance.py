"""The core's conformance kit against the fake IG, driven by the real lightstreamer-client-lib."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickwire.events import Candle, Quote
from tickwire.testing import check_provider
from tickwire_ig.testing import FakeIG

from .conftest import EPIC, source_for

pytestmark = pytest.mark.anyio

OTHER = "CS.D.GBPUSD.CFD.IP"


async def test_conformance_quotes_and_candles(tmp_path: Path) -> None:
    async with FakeIG(epics=[EPIC, OTHER], tick_interval=0.02) as fake:
        source = source_for(fake, [EPIC, OTHER], channels=["quotes", "candles"])
        report = await check_provider(source, fake, deadletter=tmp_path / "dead", timeout=40)
        assert report.reconnects >= 1
        assert report.malformed >= 1
        assert fake.created_sessions >= 2  # the drop forgot the session: a new one was made
        kinds = {type(e) for e in report.events}
        assert Quote in kinds and Candle in kinds
        streamed = [e for e in report.events if isinstance(e, Candle) and e.source == "stream"]
        assert {c.symbol for c in streamed} == {EPIC, OTHER}
        assert all(c.basis == "mid" and c.interval == "1m" for c in streamed)
