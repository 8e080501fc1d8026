"""The built-in sinks: ``null`` (counts and discards) and ``console`` (prints events)."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from typing import Literal, TextIO

from pydantic_settings import SettingsConfigDict

from tickwire.events import KIND, Event, to_json
from tickwire.hookspecs import hookimpl
from tickwire.protocols import SinkInfo, SinkRegistrar
from tickwire.settings import SinkSettings


class NullSinkSettings(SinkSettings):
    """``[[sinks]] type = "null"``: no keys of its own."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_NULL_")


class ConsoleSinkSettings(SinkSettings):
    """``[[sinks]] type = "console"``: ``format`` is ``text`` (one line per event) or ``jsonl``."""

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_CONSOLE_")

    format: Literal["text", "jsonl"] = "text"
    stream: Literal["stdout", "stderr"] = "stdout"


class NullSink:
    """Counts what it is given, by event kind, and keeps nothing."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.batches = 0

    async def open(self) -> None:
        """Nothing to open."""

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Count ``events``."""
        self.batches += 1
        self.counts.update(map(KIND.__getitem__, map(type, events)))

    async def aclose(self) -> None:
        """Nothing to close."""


class ConsoleSink:
    """Prints every event: a readable line, or one JSON object per line."""

    def __init__(self, settings: ConsoleSinkSettings, out: TextIO | None = None) -> None:
        self.settings = settings
        self._out = out

    async def open(self) -> None:
        """Nothing to open."""

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Write one line per event and flush."""
        out = self._out or (sys.stdout if self.settings.stream == "stdout" else sys.stderr)
        if self.settings.format == "jsonl":
            out.write("".join(to_json(e).decode() + "\n" for e in events))
        else:
            out.write("".join(format_event(e) + "\n" for e in events))
        out.flush()

    async def aclose(self) -> None:
        """Nothing to close."""


def format_event(event: Event) -> str:
    """One human-readable line for ``event``: kind, provider, symbol, then its fields."""
    fields = [
        f"{name}={getattr(event, name)}"
        for name in event.__struct_fields__
        if name not in ("provider", "symbol") and getattr(event, name) is not None
    ]
    return f"{KIND[type(event)]:<13} {event.provider}:{event.symbol} " + " ".join(fields)


@hookimpl(trylast=True)
def tickwire_register_sinks(register: SinkRegistrar) -> None:
    """Register ``null`` and ``console``."""
    register(SinkInfo("null", NullSinkSettings, "counts events and discards them"))
    register(SinkInfo("console", ConsoleSinkSettings, "prints events (text or jsonl)"))


@hookimpl(trylast=True)
def tickwire_sink(sink: SinkSettings) -> NullSink | ConsoleSink | None:
    """Build the ``null`` or ``console`` sink."""
    if isinstance(sink, NullSinkSettings):
        return NullSink()
    if isinstance(sink, ConsoleSinkSettings):
        return ConsoleSink(sink)
    return None
