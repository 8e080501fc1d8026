"""Stream management on the real server: created with the defaults, checked when present."""

from __future__ import annotations

import logging

import pytest
from nats.js.api import StorageType, StreamConfig
from nats_helpers import Bus

from tickwire_nats.stream import StreamMismatch, connect, ensure_stream

pytestmark = [pytest.mark.anyio, pytest.mark.service]


async def test_created_with_the_documented_defaults(bus: Bus) -> None:
    settings = bus.sink_settings()
    nc = await connect(settings, "test")
    try:
        await ensure_stream(nc.jetstream(), settings)
    finally:
        await nc.close()
    config = (await bus.nc.jetstream().stream_info(bus.stream)).config
    assert config.subjects == [f"{bus.prefix}.>"]
    assert config.max_age == 3 * 86400
    assert config.duplicate_window == 120
    assert config.num_replicas == 1
    assert config.storage == StorageType.FILE
    assert config.max_bytes == -1


async def test_present_stream_is_checked_not_changed(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    js = bus.nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=bus.stream, subjects=[f"{bus.prefix}.>"], max_age=3600, duplicate_window=60
        )
    )
    settings = bus.sink_settings()
    nc = await connect(settings, "test")
    try:
        with caplog.at_level(logging.WARNING, logger="tickwire.nats"):
            await ensure_stream(nc.jetstream(), settings)
    finally:
        await nc.close()
    assert "nats.stream_differs" in caplog.text and "max_age" in caplog.text
    assert (await js.stream_info(bus.stream)).config.max_age == 3600


async def test_stream_that_cannot_carry_the_events_is_refused(bus: Bus) -> None:
    js = bus.nc.jetstream()
    await js.add_stream(StreamConfig(name=bus.stream, subjects=[f"{bus.prefix}_other.>"]))
    settings = bus.sink_settings()
    nc = await connect(settings, "test")
    try:
        with pytest.raises(StreamMismatch, match="do not cover"):
            await ensure_stream(nc.jetstream(), settings)
    finally:
        await nc.close()


async def test_missing_stream_without_management_is_refused(bus: Bus) -> None:
    settings = bus.sink_settings(manage_stream=False)
    nc = await connect(settings, "test")
    try:
        with pytest.raises(StreamMismatch, match="does not exist"):
            await ensure_stream(nc.jetstream(), settings)
    finally:
        await nc.close()


async def test_unreachable_server_is_a_connection_failure() -> None:
    from tickwire.protocols import ConnectionFailed
    from tickwire_nats import NatsSinkSettings

    settings = NatsSinkSettings(type="nats", url="nats://127.0.0.1:1")
    with pytest.raises(ConnectionFailed):
        await connect(settings, "test")
