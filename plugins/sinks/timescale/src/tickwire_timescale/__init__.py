"""tickwire-timescale: PostgreSQL history, on TimescaleDB hypertables when the extension is there.

This module holds only the hook implementations; the sink is in :mod:`tickwire_timescale.sink`,
its settings in :mod:`tickwire_timescale.settings`, the schema and migrations in
:mod:`tickwire_timescale.schema` and the TimescaleDB statements in
:mod:`tickwire_timescale.timescaledb`.
"""

from __future__ import annotations

from tickwire.hookspecs import hookimpl
from tickwire.protocols import SinkInfo, SinkRegistrar
from tickwire.settings import SinkSettings
from tickwire_timescale.settings import TimescaleSettings as TimescaleSettings
from tickwire_timescale.sink import (
    TimescaleSink as TimescaleSink,
)
from tickwire_timescale.sink import (
    TimescaleSinkError as TimescaleSinkError,
)

__version__ = "0.1.0"


@hookimpl
def tickwire_register_sinks(register: SinkRegistrar) -> None:
    """Register the ``timescale`` sink."""
    register(
        SinkInfo(
            "timescale",
            TimescaleSettings,
            "PostgreSQL history (TimescaleDB hypertables when installed): trades, quotes, "
            "candles, gaps, book snapshots",
        )
    )


@hookimpl
def tickwire_sink(sink: SinkSettings) -> TimescaleSink | None:
    """Build the sink for a ``[[sinks]] type = "timescale"`` entry."""
    if not isinstance(sink, TimescaleSettings):
        return None
    return TimescaleSink(sink)


__all__ = (
    "TimescaleSettings",
    "TimescaleSink",
    "TimescaleSinkError",
    "tickwire_register_sinks",
    "tickwire_sink",
)
