"""tickwire's provider contract, run by the kit against the fake exchange over real sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from tickwire.testing import check_provider
from tickwire_example.testing import FakeExchange

pytestmark = pytest.mark.anyio


async def test_check_provider(tmp_path: Path) -> None:
    async with FakeExchange() as fake:
        fake.simulate(rate_per_s=20)
        source = fake.source(["AAA-USD", "BBB-USD"])
        report = await check_provider(source, fake, deadletter=tmp_path / "dead")
    assert report.symbols_seen == {"AAA-USD", "BBB-USD"}
    assert report.reconnects >= 1
    # The subscribe message went out again after the forced disconnect (the resubscribe).
    assert sum(m.get("op") == "subscribe" for m in fake.received) >= 2
