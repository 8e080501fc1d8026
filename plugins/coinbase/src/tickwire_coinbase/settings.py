"""The keys of a ``[[sources]] provider = "coinbase"`` entry."""

from __future__ import annotations

import base64
import binascii
from typing import Literal, Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tickwire.settings import SourceSettings

#: Production endpoints of the Coinbase Exchange (not Advanced Trade).
WS_URL = "wss://ws-feed.exchange.coinbase.com"
REST_URL = "https://api.exchange.coinbase.com"
#: The public sandbox (it lists only a subset of products).
SANDBOX_WS_URL = "wss://ws-feed-public.sandbox.exchange.coinbase.com"
SANDBOX_REST_URL = "https://api-public.sandbox.exchange.coinbase.com"


class CoinbaseSettings(SourceSettings):
    """A Coinbase Exchange source.

    Public channels (trades, quotes, ``level2_batch`` book) need no key. The credentials are only
    needed for ``book_channel = "level2"``; give all three or none, preferably from the
    environment: ``TICKWIRE_COINBASE_API_KEY``, ``TICKWIRE_COINBASE_API_SECRET``,
    ``TICKWIRE_COINBASE_PASSPHRASE``.
    """

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_COINBASE_")

    provider: str = Field(default="coinbase", description="Always 'coinbase'.")
    ws_url: str = Field(default=WS_URL, description="Websocket feed (ws:// or wss://).")
    rest_url: str = Field(default=REST_URL, description="REST base URL, for backfill.")
    api_key: SecretStr | None = Field(default=None, description="Exchange API key.")
    api_secret: SecretStr | None = Field(
        default=None, description="Exchange API secret (base64, as Coinbase shows it)."
    )
    passphrase: SecretStr | None = Field(default=None, description="Exchange API passphrase.")
    book_channel: Literal["level2_batch", "level2"] = Field(
        default="level2_batch",
        description=(
            "Feed channel for channel 'book': 'level2_batch' (public, batched every 50 ms) "
            "or 'level2' (every update; needs the credentials)."
        ),
    )
    compression: bool = Field(
        default=False, description="Offer permessage-deflate (less bandwidth, more CPU)."
    )

    @property
    def authenticated(self) -> bool:
        """True when the credentials are set (the validator ensures all three or none)."""
        return self.api_key is not None

    @model_validator(mode="after")
    def _check_credentials(self) -> Self:
        given = {
            "api_key": self.api_key,
            "api_secret": self.api_secret,
            "passphrase": self.passphrase,
        }
        present = [name for name, value in given.items() if value is not None]
        if present and len(present) != 3:
            missing = [name for name in given if name not in present]
            raise ValueError(
                "Coinbase credentials need all of api_key, api_secret and passphrase "
                f"(missing: {', '.join(missing)}; e.g. TICKWIRE_COINBASE_"
                f"{missing[0].upper()}), or none of them for the public channels"
            )
        if self.api_secret is not None:
            try:
                base64.b64decode(self.api_secret.get_secret_value(), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(
                    "api_secret is not base64: paste the secret exactly as Coinbase showed it"
                ) from None
        if "book" in self.channels and self.book_channel == "level2" and not present:
            raise ValueError(
                "book_channel = 'level2' needs authentication (Coinbase requires it since "
                "2023-08-01): set api_key, api_secret and passphrase (e.g. "
                "TICKWIRE_COINBASE_API_KEY, TICKWIRE_COINBASE_API_SECRET, "
                "TICKWIRE_COINBASE_PASSPHRASE), or use book_channel = 'level2_batch'"
            )
        unsupported = sorted(set(self.channels) - {"trades", "quotes", "book"})
        if unsupported:
            raise ValueError(
                f"channel {unsupported[0]!r} is not served by coinbase; valid channels: "
                "trades, quotes, book (candles are built from trades)"
            )
        return self
