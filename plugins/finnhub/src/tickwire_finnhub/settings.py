"""The keys of a ``[[sources]] provider = "finnhub"`` entry."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tickwire.settings import SourceSettings

#: Production endpoints (FH-DOCS; the REST base is the OpenAPI ``servers`` entry).
WS_URL = "wss://ws.finnhub.io"
REST_URL = "https://finnhub.io/api/v1"

#: Forex brokers as Finnhub names them in ``BROKER:SYMBOL`` (``/forex/exchange``). A symbol
#: with one of these prefixes is forex; any other ``EXCHANGE:PAIR`` is crypto; a plain ticker
#: is a stock. Compared case-insensitively.
FOREX_BROKERS = (
    "OANDA",
    "FXCM",
    "FOREX.COM",
    "FHFX",
    "IC MARKETS",
    "FXPRO",
    "OCTAFX",
    "PEPPERSTONE",
)

Market = Literal["stock", "forex", "crypto"]


class FinnhubSettings(SourceSettings):
    """A Finnhub source: trades over the websocket, candle history over REST.

    The API key is required; give it through the environment (``TICKWIRE_FINNHUB_API_KEY``)
    rather than the file. One key may hold one websocket connection, carrying at most
    ``max_symbols`` symbols (50 on the free plan, more on paid plans: set it to yours).
    """

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_FINNHUB_")

    provider: str = Field(default="finnhub", description="Always 'finnhub'.")
    api_key: SecretStr | None = Field(
        default=None, description="Finnhub API key (env TICKWIRE_FINNHUB_API_KEY)."
    )
    ws_url: str = Field(default=WS_URL, description="Websocket endpoint (the token is appended).")
    rest_url: str = Field(default=REST_URL, description="REST base URL, for candle backfill.")
    max_symbols: int = Field(
        default=50,
        ge=1,
        description="Symbols your plan allows on the key's one connection (free plan: 50).",
    )
    rest_calls_per_minute: int = Field(
        default=60, ge=1, description="REST calls per minute your plan allows (free plan: 60)."
    )
    forex_brokers: list[str] = Field(
        default=list(FOREX_BROKERS),
        description="Prefixes of 'BROKER:SYMBOL' symbols that are forex (others are crypto).",
    )
    markets: dict[str, Market] = Field(
        default_factory=dict,
        description="Per-symbol market override ('stock', 'forex' or 'crypto') for backfill.",
    )

    @model_validator(mode="after")
    def _check(self) -> Self:
        if self.api_key is None or not self.api_key.get_secret_value().strip():
            raise ValueError(
                "finnhub needs an API key: set TICKWIRE_FINNHUB_API_KEY in the environment "
                "(or api_key in the source)"
            )
        if len(self.symbols) > self.max_symbols:
            raise ValueError(
                f"finnhub allows {self.max_symbols} symbols per API key on your plan "
                f"(setting max_symbols); you listed {len(self.symbols)}: remove "
                f"{len(self.symbols) - self.max_symbols} or raise max_symbols if your plan "
                "allows more"
            )
        unsupported = sorted(set(self.channels) - {"trades"})
        if unsupported:
            raise ValueError(
                f"channel {unsupported[0]!r} is not streamed by finnhub (its websocket carries "
                "trades only); valid channels: trades (candles are built from trades and "
                "backfilled over REST)"
            )
        return self

    @property
    def symbols_per_connection(self) -> int:
        """The plan's symbol limit: the runner puts at most this many on one connection."""
        return self.max_symbols

    @property
    def token(self) -> str:
        """The API key in clear, for the one place that sends it."""
        assert self.api_key is not None  # the validator guarantees it
        return self.api_key.get_secret_value()

    def market_of(self, symbol: str) -> Market:
        """``stock``, ``forex`` or ``crypto``: which candle endpoint serves ``symbol``."""
        override = self.markets.get(symbol)
        if override is not None:
            return override
        prefix, sep, _ = symbol.partition(":")
        if not sep:
            return "stock"
        brokers = {b.upper() for b in self.forex_brokers}
        return "forex" if prefix.upper() in brokers else "crypto"


__all__ = ("FOREX_BROKERS", "REST_URL", "WS_URL", "FinnhubSettings", "Market")
