"""The settings stage: what a ``[[sources]] provider = "example"`` table may say."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from tickwire.settings import SourceSettings


class ExampleSettings(SourceSettings):
    """``[[sources]] provider = "example"``: the Example Exchange feed and its REST candles.

    Every key can also come from the environment as ``TICKWIRE_EXAMPLE_<KEY>``
    (``TICKWIRE_EXAMPLE_API_KEY``), which wins over the file.
    """

    model_config = SettingsConfigDict(extra="forbid", env_prefix="TICKWIRE_EXAMPLE_")

    provider: str = Field(default="example", description="Provider name: 'example'.")
    ws_url: str | None = Field(
        default="wss://stream.example.invalid/ws", description="Websocket feed."
    )
    rest_url: str | None = Field(
        default="https://api.example.invalid", description="REST base URL for candle history."
    )
    api_key: SecretStr | None = Field(
        default=None, description="API key, sent in the subscribe message (a secret)."
    )


__all__ = ("ExampleSettings",)
