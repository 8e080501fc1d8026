"""Drops: a recoverable one loses nothing; a lost session reconnects, resubscribes, records Gaps."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from tickwire.events import Candle, Gap, Quote
from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire.testing import MemorySink
from tickwire_ig.connect import IGConnector
from tickwire_ig.normalize import IGNormalizer
from tickwire_ig.settings import IGSettings
from tickwire_ig.subscribe import IGSubscriber
from tickwire_ig.testing import FakeIG

from .conftest import EPIC, source_for

pytestmark = pytest.mark.anyio


async def test_recoverable_drop_loses_nothing() -> None:
    async with FakeIG(tick_interval=0.02) as fake:
        settings = IGSettings(**source_for(fake))
        async with IGConnector(settings).open([EPIC]) as conn:
            await IGSubscriber(settings).subscribe(conn, [EPIC])
            seen: list[int] = []
            dropped = False
            with anyio.fail_after(20):
                async for frame in conn:
                    message = json.loads(frame)
                    if message[0] == "u":
                        seen.append(int(message[3]["TIMESTAMP"]))
                    if len(seen) == 20 and not dropped:
                        dropped = True
                        await fake.drop_connections(recoverable=True)
                    if fake.recoveries and len(seen) > 80:
                        break
        assert fake.created_sessions == 1  # the same session, recovered
        sent = [t.ts_ms for t in fake.price_updates[EPIC]]
        assert seen == sent[: len(seen)]  # every update, in order, none twice


async def test_lost_session_reconnects_and_records_gaps(tmp_path: Path) -> None:
    async with FakeIG(tick_interval=0.02, time_step_ms=1000) as fake:
        memory = MemorySink()
        settings = Settings(
            sources=[source_for(fake, channels=["quotes", "candles"])],
            sinks=[],
            bootstrap={"days": 0},
            runner={"backoff_initial": "50ms", "backoff_max": "200ms", "deadletter": str(tmp_path)},
        )
        pipeline = Pipeline(settings, sinks=[memory])
        async with pipeline:
            await memory.wait_for(lambda m: sum(isinstance(e, Quote) for e in m.events) > 10, 20)
            await fake.drop_connections()  # sessions forgotten: recovery refused
            await memory.wait_for(lambda m: any(isinstance(e, Gap) for e in m.events), 30)
            await memory.wait_for(
                lambda m: (
                    {g.kind for g in m.events if isinstance(g, Gap)} >= {"quotes", "candles:1m"}
                ),
                30,
            )
        assert pipeline.metrics.value("reconnects_total") >= 1
        assert fake.created_sessions >= 2  # the SDK may start one more before it is disposed
        gaps = [e for e in memory.events if isinstance(e, Gap) and e.status == "open"]
        quotes = [e for e in memory.events if isinstance(e, Quote)]
        for gap in gaps:
            assert gap.reason == "disconnect" and gap.end > gap.start
        quote_gap = next(g for g in gaps if g.kind == "quotes")
        # the window runs from the last quote before the drop to the first one after it
        assert any(q.ts == quote_gap.start for q in quotes)
        assert any(q.ts == quote_gap.end for q in quotes)
        assert not any(quote_gap.start < q.ts < quote_gap.end for q in quotes)
        candle_gap = next(g for g in gaps if g.kind == "candles:1m")
        candles = [e for e in memory.events if isinstance(e, Candle) and e.source == "stream"]
        assert any(c.start == candle_gap.start for c in candles)
        assert any(c.start == candle_gap.end for c in candles)


async def test_sdk_decodes_the_tlcp_value_encoding_exactly() -> None:
    """Values with ``|``, ``%``, CR/LF, a leading ``#``/``$``/``^`` and UTF-8 survive the wire."""
    tricky = "#$^|%\r\n é€"
    async with FakeIG(tick_interval=0.05) as fake:
        settings = IGSettings(**source_for(fake))
        normalize = IGNormalizer(settings)
        async with IGConnector(settings).open([EPIC]) as conn:
            await IGSubscriber(settings).subscribe(conn, [EPIC])
            values = []
            with anyio.fail_after(20):
                async for frame in conn:
                    message = json.loads(frame)
                    if message[0] != "u":
                        continue
                    values.append(message[3]["BIDPRICE1"])
                    if len(values) == 3:
                        await fake.send_raw(tricky)
                    if tricky in values:
                        with pytest.raises(ValueError, match="BIDPRICE1"):
                            normalize(frame, 0)
                        break
            # null fields reach us as None (the rest of the garbage update was '#')
            assert message[3]["ASKPRICE1"] is None
