"""tickwire: real-time market data from many providers, normalized, into your stores."""

from tickwire.events import (
    BookDelta as BookDelta,
    BookSnapshot as BookSnapshot,
    Candle as Candle,
    Event as Event,
    Gap as Gap,
    Quote as Quote,
    Trade as Trade,
)
from tickwire.hookspecs import hookimpl as hookimpl
from tickwire.pipeline import Pipeline as Pipeline
from tickwire.settings import (
    ConfigError as ConfigError,
    Settings as Settings,
    SinkSettings as SinkSettings,
    SourceSettings as SourceSettings,
    load_settings as load_settings,
)

__version__ = "0.1.0"

__all__ = (
    "BookDelta",
    "BookSnapshot",
    "Candle",
    "ConfigError",
    "Event",
    "Gap",
    "Pipeline",
    "Quote",
    "Settings",
    "SinkSettings",
    "SourceSettings",
    "Trade",
    "hookimpl",
    "load_settings",
)
