"""Helpers the nats tests share (a module name unique in the workspace)."""

from __future__ import annotations

import uuid
from typing import Any

from nats.aio.client import Client

from tickwire_nats import NatsSinkSettings, NatsSourceSettings

URL = "nats://127.0.0.1:4222"


class Bus:
    """A stream name and subject prefix no other test (or engineer) uses."""

    def __init__(self, nc: Client) -> None:
        tag = uuid.uuid4().hex[:12]
        self.nc = nc
        self.stream = f"TWTEST_{tag}"
        self.prefix = f"twtest_{tag}"

    def keys(self, **extra: Any) -> dict[str, Any]:
        return {"url": URL, "stream": self.stream, "subject_prefix": self.prefix, **extra}

    def sink_settings(self, **extra: Any) -> NatsSinkSettings:
        return NatsSinkSettings(type="nats", **self.keys(**extra))

    def source_settings(self, **extra: Any) -> NatsSourceSettings:
        return NatsSourceSettings(provider="nats", **self.keys(**extra))

    async def count(self) -> int:
        info = await self.nc.jetstream().stream_info(self.stream)
        return int(info.state.messages)
