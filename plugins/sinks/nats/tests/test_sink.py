from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pytest
from nats_helpers import Bus, FeedPlugin, base_settings, wait_until

from tickwire.events import Candle, Event, Gap, Quote, Trade
from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire.testing.sink import sample_events
from tickwire_nats import NatsSink
from tickwire_nats.schema import decode, message_id, parse_subject
from tickwire_nats.sink import PublishFailed

pytestmark = [pytest.mark.anyio, pytest.mark.service]


async def read_all(bus: Bus) -> list[tuple[str, dict[str, str], Event]]:
    """Every message in the test's stream, in order, decoded."""
    js = bus.nc.jetstream()
    sub = await js.pull_subscribe(f"{bus.prefix}.>", stream=bus.stream)
    out = []
    total = await bus.count()
    while len(out) < total:
        for msg in await sub.fetch(min(1000, total - len(out)), timeout=5):
            await msg.ack()
            out.append((msg.subject, dict(msg.headers or {}), decode(msg.data)))
    await sub.unsubscribe()
    return out


async def test_sink_publishes_every_event_with_subject_id_and_encoding(bus: Bus) -> None:
    events = sample_events()
    sink = NatsSink(bus.sink_settings())
    await sink.open()
    try:
        await sink.write_batch(events)
    finally:
        await sink.aclose()
    stored = await read_all(bus)
    assert [e for _, _, e in stored] == events
    for subject, headers, event in stored:
        kind, provider, symbol = parse_subject(bus.prefix, subject)
        assert (provider, symbol) == (event.provider, event.symbol)
        assert kind in subject
        assert headers["Nats-Msg-Id"] == message_id(event)
        assert headers["Tickwire-Encoding"] == "msgpack/1"
    assert sink.stored == len(events) and sink.duplicates == 0


async def test_redundant_pair_stores_each_event_once(bus: Bus) -> None:
    """Two collectors publishing the same events, interleaved: the stream keeps one copy."""
    events = sample_events()
    first, second = NatsSink(bus.sink_settings()), NatsSink(bus.sink_settings())
    await first.open()
    await second.open()
    try:
        half = len(events) // 2
        await first.write_batch(events[:half])
        # The second collector saw the same events at other moments: other receive times.
        again = [_received_later(e) for e in events]
        await second.write_batch(again)
        await first.write_batch(events[half:])
    finally:
        await first.aclose()
        await second.aclose()
    assert await bus.count() == len(events)
    assert first.stored + second.stored == len(events)
    assert first.duplicates + second.duplicates == len(events)
    stored = [e for _, _, e in await read_all(bus)]
    assert sorted(map(message_id, stored)) == sorted(map(message_id, events))


def _received_later(event: Event) -> Event:
    import msgspec

    if hasattr(event, "received_ts"):
        return msgspec.structs.replace(event, received_ts=event.received_ts + 12345)  # type: ignore[union-attr]
    return event


async def test_retried_batch_is_harmless(bus: Bus) -> None:
    """The runner retries a failed write_batch: the copies already stored are dropped."""
    events = sample_events()
    sink = NatsSink(bus.sink_settings())
    await sink.open()
    try:
        await sink.write_batch(events[:40])  # "the first try got this far"
        await sink.write_batch(events)  # the retry of the whole batch
    finally:
        await sink.aclose()
    assert await bus.count() == len(events)
    assert sink.duplicates == 40


async def test_updated_candle_gets_through_and_its_replay_does_not(bus: Bus) -> None:
    start = (time.time_ns() // 60_000_000_000) * 60_000_000_000
    forming = Candle(
        "p",
        "S",
        "1m",
        start,
        Decimal(1),
        Decimal(2),
        Decimal(1),
        Decimal(2),
        Decimal(3),
        2,
        closed=False,
    )
    closed = Candle(
        "p",
        "S",
        "1m",
        start,
        Decimal(1),
        Decimal(2),
        Decimal("0.5"),
        Decimal(1),
        Decimal(4),
        3,
        closed=True,
    )
    open_gap = Gap("p", "S", "trades", start, start + 10, "disconnect")
    filled_gap = Gap("p", "S", "trades", start, start + 10, "disconnect", "filled")
    quote = Quote("p", "S", start, start, Decimal(1), None, Decimal(2), None)
    trade = Trade("p", "S", start, start, Decimal(1), Decimal(1), "buy", "1")
    sink = NatsSink(bus.sink_settings())
    await sink.open()
    try:
        await sink.write_batch([forming, open_gap, quote, trade])
        await sink.write_batch([closed, forming, closed, filled_gap, open_gap, quote, trade])
    finally:
        await sink.aclose()
    stored = [e for _, _, e in await read_all(bus)]
    assert stored == [forming, open_gap, quote, trade, closed, filled_gap]


async def test_write_before_open_is_an_error(bus: Bus) -> None:
    with pytest.raises(RuntimeError, match="before open"):
        await NatsSink(bus.sink_settings()).write_batch(sample_events(n=1))


async def test_batch_jetstream_refuses_raises_for_the_runner_to_retry(bus: Bus) -> None:
    sink = NatsSink(bus.sink_settings(ack_timeout="5s"))
    await sink.open()
    try:
        await bus.nc.jetstream().delete_stream(bus.stream)  # the stream is gone under it
        with pytest.raises(PublishFailed, match="publishes failed"):
            await sink.write_batch(sample_events(n=5))
    finally:
        await sink.aclose()


async def test_through_the_runner(bus: Bus, tmp_path: Path) -> None:
    """The sink as the runner drives it (batches sized by the runner): all stored once."""
    settings = Settings(
        sources=[{"provider": "feed", "symbols": ["A-B", "C.D"], "count": 500}],
        sinks=[{"type": "nats", **bus.keys(), "batch_size": 300}],
        **base_settings(tmp_path),
    )
    async with Pipeline(settings, plugins=[FeedPlugin()]) as pipeline:
        await wait_until(lambda: pipeline.running_sinks[0].written == 1000)
    assert await bus.count() == 1000
