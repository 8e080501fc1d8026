"""``[[sources]] provider = "ig"``: IG Markets epics, endpoints, credentials and timers."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from tickwire.settings import Duration, SourceSettings

#: IG's demo and live REST bases (the Lightstreamer address comes from the login response).
DEMO_REST_URL = "https://demo-api.ig.com/gateway/deal"
LIVE_REST_URL = "https://api.ig.com/gateway/deal"

#: tickwire interval -> IG CHART item scale (the only candle scales IG streams).
CHART_SCALES: dict[str, str] = {"1s": "SECOND", "1m": "1MINUTE", "5m": "5MINUTE", "1h": "HOUR"}


class StreamMemory:
    """What the streams of one source delivered last, kept across its connections.

    ``last`` maps ``(symbol, kind)`` (kind ``quotes`` or ``candles:<interval>``) to the event
    time (a candle's start) of the last event delivered; after a lost session the next
    connection's normalizer reports the window from there as a disconnect Gap.
    """

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: dict[tuple[str, str], int] = {}


class IGSettings(SourceSettings):
    """The IG source's keys; each can also come from ``TICKWIRE_IG_<KEY>``.

    ``symbols`` are IG epics (``CS.D.EURUSD.CFD.IP``). ``api_key``, ``username`` and
    ``password`` are secrets: put them in the environment (``TICKWIRE_IG_API_KEY``,
    ``TICKWIRE_IG_USERNAME``, ``TICKWIRE_IG_PASSWORD``), never in a file you share.
    """

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_IG_")

    provider: str = Field(default="ig", description="Provider name: 'ig'.")
    channels: list[Literal["trades", "quotes", "book", "candles"]] = Field(
        default=["quotes"],
        min_length=1,
        description="quotes (PRICE items), trades (CHART TICK last-traded prices), candles.",
    )
    rest_url: str = Field(
        default=DEMO_REST_URL,
        description="REST base including /gateway/deal (live: https://api.ig.com/gateway/deal).",
    )
    api_key: SecretStr = Field(description="The IG API key (X-IG-API-KEY).")
    username: SecretStr = Field(description="The IG account's user name.")
    password: SecretStr = Field(description="The IG account's password.")
    account_id: str | None = Field(
        default=None, description="Account to stream and trade (default: the session's current)."
    )
    session_version: Literal[2, 3] = Field(
        default=2,
        description="POST /session version: 2 (CST/X-SECURITY-TOKEN) or 3 (OAuth, 60 s tokens).",
    )
    quote_item: Literal["PRICE", "TICK"] = Field(
        default="PRICE",
        description="Quotes from PRICE:<account>:<epic> (Pricing adapter, sizes) or CHART TICK.",
    )
    candle_intervals: list[Literal["1s", "1m", "5m", "1h"]] = Field(
        default=["1m"],
        description="CHART candle items to stream (keep in step with [candles] intervals).",
    )
    candle_basis: Literal["mid", "bid"] = Field(
        default="mid", description="Streamed and backfilled candles from bid/offer mids or bids."
    )
    max_subscriptions: int = Field(
        default=40,
        ge=1,
        description="Items per Lightstreamer connection (IG: 40 by default per connection).",
    )
    token_refresh: Duration = Field(
        default=timedelta(hours=6),
        description="Log in again when the tokens are this old (IG: valid 12 h since last use).",
    )
    keepalive: Duration = Field(
        default=timedelta(seconds=2), description="Lightstreamer keep-alive asked of the server."
    )
    stalled_timeout: Duration = Field(
        default=timedelta(seconds=2), description="Extra silence before the SDK deems it stalled."
    )
    reconnect_timeout: Duration = Field(
        default=timedelta(seconds=3), description="Extra silence before the SDK reconnects."
    )
    connect_timeout: Duration = Field(
        default=timedelta(seconds=20), description="Longest wait for the first CONNECTED status."
    )
    heartbeat_every: Duration = Field(
        default=timedelta(seconds=2),
        description="How often a live but quiet connection reports itself alive to the runner.",
    )
    rest_timeout: Duration = Field(
        default=timedelta(seconds=20), description="Timeout of one REST request."
    )
    rest_requests_per_minute: float = Field(
        default=10, gt=0, description="REST history pages per minute (IG demo: 10 non-trading)."
    )
    page_size: int = Field(
        default=1000, ge=1, le=10_000, description="Data points per /prices page."
    )
    queue: int = Field(
        default=10_000, ge=1, description="Updates buffered between the SDK thread and the loop."
    )

    _memory: StreamMemory = PrivateAttr(default_factory=StreamMemory)

    @property
    def memory(self) -> StreamMemory:
        """Runtime state shared by this source's connections (not a key)."""
        return self._memory

    @field_validator("rest_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("rest_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("candle_intervals")
    @classmethod
    def _unique_intervals(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("candle_intervals lists an interval twice")
        return value

    @property
    def items_per_symbol(self) -> int:
        """Lightstreamer items one epic takes on a connection (for the 40-item limit)."""
        channels = set(self.channels)
        count = 0
        if "quotes" in channels and self.quote_item == "PRICE":
            count += 1
        if "trades" in channels or ("quotes" in channels and self.quote_item == "TICK"):
            count += 1
        if "candles" in channels:
            count += len(self.candle_intervals)
        return max(count, 1)

    @property
    def symbols_per_connection(self) -> int:
        """Epics per connection so that every connection stays within ``max_subscriptions``."""
        return max(1, self.max_subscriptions // self.items_per_symbol)


__all__ = ("CHART_SCALES", "DEMO_REST_URL", "LIVE_REST_URL", "IGSettings", "StreamMemory")
