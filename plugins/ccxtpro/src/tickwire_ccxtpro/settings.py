"""Settings of a ``[[sources]]`` entry with ``provider = "ccxt:<exchange id>"``."""

from __future__ import annotations

import difflib
import os
from datetime import timedelta
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from tickwire.events import Interval
from tickwire.settings import Duration, SourceSettings
from tickwire_ccxtpro import exchanges

FAMILY = "ccxt"
PREFIX = FAMILY + ":"

#: The ``exchange.has`` flag each channel needs.
CHANNEL_FLAGS: dict[str, str] = {
    "trades": "watchTrades",
    "quotes": "watchTicker",
    "book": "watchOrderBook",
    "candles": "watchOHLCV",
}


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class CcxtSettings(SourceSettings):
    """One ccxt.pro exchange: ``provider = "ccxt:binance"``, symbols in ccxt's unified form.

    ``urls`` and ``options`` go to the ccxt exchange constructor, merged over the plugin's own
    defaults (cache sizes, and per exchange what :mod:`tickwire_ccxtpro.exchanges` says).
    Credentials come from the file or from ``TICKWIRE_CCXT_<EXCHANGE>_API_KEY``,
    ``..._SECRET`` and ``..._PASSWORD``.
    """

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_CCXT_")

    urls: dict[str, Any] = Field(
        default_factory=dict, description="Merged into the exchange's ccxt `urls`."
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Merged into the exchange's ccxt `options`."
    )
    api_key: SecretStr | None = Field(default=None, description="ccxt `apiKey`.")
    secret: SecretStr | None = Field(default=None, description="ccxt `secret`.")
    password: SecretStr | None = Field(default=None, description="ccxt `password`.")
    candle_intervals: list[Interval] = Field(
        default=["1m"], min_length=1, description="Intervals streamed with watch_ohlcv."
    )
    book_depth: int | None = Field(
        default=None, ge=1, description="Levels per side in snapshots (and the REST depth)."
    )
    book_interval: Duration = Field(
        default=timedelta(seconds=1),
        description="Least time between two BookSnapshots of a symbol (0: every update).",
    )
    trades_cache: int = Field(
        default=20_000, ge=100, description="ccxt `tradesLimit`: trades one symbol may buffer."
    )
    ohlcv_cache: int = Field(
        default=1000, ge=10, description="ccxt `OHLCVLimit`: candles one symbol may buffer."
    )
    handoff_buffer: int = Field(
        default=10_000, ge=1, description="Batches waiting between ccxt and the runner."
    )
    heartbeat: Duration = Field(
        default=timedelta(seconds=5),
        description="How often a live connection says so when the market is quiet.",
    )
    symbols_per_connection: int | None = Field(
        default=None, ge=1, description="Split symbols over this many per exchange instance."
    )
    backfill: bool = Field(
        default=True, description="Fill gaps and bootstrap history over REST (false: never)."
    )
    backfill_rows: int | None = Field(
        default=None, ge=1, description="Rows per REST history page (default: the exchange's)."
    )

    @model_validator(mode="before")
    @classmethod
    def _credentials_from_env(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        provider = data.get("provider")
        if isinstance(provider, str) and provider.startswith(PREFIX):
            exchange = provider[len(PREFIX) :].upper()
            for key in ("api_key", "secret", "password"):
                value = os.environ.get(f"TICKWIRE_CCXT_{exchange}_{key.upper()}")
                if value is not None and data.get(key) is None:
                    data = {**data, key: value}
        return data

    @field_validator("provider")
    @classmethod
    def _known_exchange(cls, value: str) -> str:
        if not value.startswith(PREFIX) or len(value) <= len(PREFIX):
            raise ValueError("write the provider as 'ccxt:<exchange id>', e.g. 'ccxt:binance'")
        exchange_id = value[len(PREFIX) :]
        known = exchanges.pro_exchange_ids()
        if exchange_id not in known:
            close = difflib.get_close_matches(exchange_id, known, n=5, cutoff=0.5)
            hint = f"; did you mean {', '.join(PREFIX + c for c in close)}?" if close else ""
            raise ValueError(
                f"ccxt.pro has no exchange {exchange_id!r}{hint} "
                f"(it streams {len(known)} exchanges; see ccxt.pro.exchanges)"
            )
        return value

    @model_validator(mode="after")
    def _exchange_can(self) -> CcxtSettings:
        has = exchanges.has(self.exchange_id)
        for channel in self.channels:
            flag = CHANNEL_FLAGS[channel]
            if not has.get(flag):
                extra = (
                    "; drop 'candles' from channels and the candle builder makes the [candles] "
                    "intervals from trades"
                    if channel == "candles"
                    else ""
                )
                raise ValueError(
                    f"{self.provider} cannot stream {channel} (ccxt has['{flag}'] is "
                    f"{has.get(flag)!r}){extra}"
                )
        if "candles" in self.channels:
            timeframes = exchanges.timeframes(self.exchange_id)
            missing = [i for i in self.candle_intervals if i not in timeframes]
            if missing:
                raise ValueError(
                    f"{self.provider} has no {', '.join(missing)} candles; valid: "
                    f"{', '.join(timeframes)}"
                )
        if (self.ws_url or self.rest_url) and not exchanges.maps_urls(self.exchange_id):
            raise ValueError(
                f"ws_url/rest_url are mapped to ccxt urls only for "
                f"{', '.join(exchanges.URL_MAPS)}; for {self.exchange_id} set `urls` instead"
            )
        return self

    @property
    def exchange_id(self) -> str:
        """The ccxt exchange id (the part after ``ccxt:``)."""
        return self.provider[len(PREFIX) :]

    def exchange_config(self) -> dict[str, Any]:
        """The dict handed to the ccxt exchange constructor (holds revealed credentials)."""
        options = _deep_merge(
            {"tradesLimit": self.trades_cache, "OHLCVLimit": self.ohlcv_cache},
            exchanges.default_options(self.exchange_id, self.symbols),
        )
        options = _deep_merge(options, self.options)
        urls = exchanges.urls_for(self.exchange_id, self.ws_url, self.rest_url)
        urls = _deep_merge(urls, self.urls)
        config: dict[str, Any] = {"enableRateLimit": True, "options": options}
        if urls:
            config["urls"] = urls
        if self.api_key is not None:
            config["apiKey"] = self.api_key.get_secret_value()
        if self.secret is not None:
            config["secret"] = self.secret.get_secret_value()
        if self.password is not None:
            config["password"] = self.password.get_secret_value()
        return config


__all__ = ("CHANNEL_FLAGS", "FAMILY", "PREFIX", "CcxtSettings")
