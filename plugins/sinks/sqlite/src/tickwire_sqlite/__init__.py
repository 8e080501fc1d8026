"""tickwire-sqlite: the embedded default sink, one SQLite file (``tickwire.db``).

This module holds only the hook implementations; the sink is in :mod:`tickwire_sqlite.sink`,
its settings in :mod:`tickwire_sqlite.settings` and the schema in :mod:`tickwire_sqlite.schema`.
"""

from __future__ import annotations

from tickwire.hookspecs import hookimpl
from tickwire.protocols import SinkInfo, SinkRegistrar
from tickwire.settings import SinkSettings
from tickwire_sqlite.settings import SqliteSettings as SqliteSettings
from tickwire_sqlite.sink import SqliteSink as SqliteSink
from tickwire_sqlite.sink import SqliteSinkError as SqliteSinkError

__version__ = "0.1.0"


@hookimpl
def tickwire_register_sinks(register: SinkRegistrar) -> None:
    """Register the ``sqlite`` sink."""
    register(
        SinkInfo(
            "sqlite",
            SqliteSettings,
            "embedded SQLite file (the default): trades, quotes, candles, gaps, book snapshots",
        )
    )


@hookimpl
def tickwire_sink(sink: SinkSettings) -> SqliteSink | None:
    """Build the SQLite sink for a ``[[sinks]] type = "sqlite"`` entry."""
    if not isinstance(sink, SqliteSettings):
        return None
    return SqliteSink(sink)


__all__ = (
    "SqliteSettings",
    "SqliteSink",
    "SqliteSinkError",
    "tickwire_register_sinks",
    "tickwire_sink",
)
