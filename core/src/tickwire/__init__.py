"""tickwire: real-time market data from many providers, normalized, into your stores."""

from tickwire.events import (
    BookDelta as BookDelta,
)
from tickwire.events import (
    BookSnapshot as BookSnapshot,
)
from tickwire.events import (
    Candle as Candle,
)
from tickwire.events import (
    Event as Event,
)
from tickwire.events import (
    Gap as Gap,
)
from tickwire.events import (
    Quote as Quote,
)
from tickwire.events import (
    Trade as Trade,
)
from tickwire.hookspecs import hookimpl as hookimpl
from tickwire.pipeline import Pipeline as Pipeline
from tickwire.settings import (
    ConfigError as ConfigError,
)
from tickwire.settings import (
    Settings as Settings,
)
from tickwire.settings import (
    SinkSettings as SinkSettings,
)
from tickwire.settings import (
    SourceSettings as SourceSettings,
)
from tickwire.settings import (
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
