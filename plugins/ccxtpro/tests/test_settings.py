"""Settings: exchange ids, channels against exchange.has, urls/options, credentials."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tickwire._plugins import Plugins
from tickwire.settings import ConfigError, validate_entry
from tickwire_ccxtpro import exchanges
from tickwire_ccxtpro.settings import CcxtSettings


def test_unknown_exchange_lists_close_matches() -> None:
    with pytest.raises(ValidationError) as info:
        CcxtSettings(provider="ccxt:binanse", symbols=["BTC/USDT"])
    assert "ccxt:binance" in str(info.value)


def test_provider_must_name_an_exchange() -> None:
    with pytest.raises(ValidationError, match="ccxt:<exchange id>"):
        CcxtSettings(provider="ccxt:", symbols=["BTC/USDT"])


def test_channel_needs_the_exchange_to_have_it() -> None:
    lacking = next(
        (i for i in exchanges.pro_exchange_ids() if not exchanges.has(i).get("watchOHLCV")), None
    )
    assert lacking is not None
    with pytest.raises(ValidationError, match="candle builder"):
        CcxtSettings(provider=f"ccxt:{lacking}", symbols=["BTC/USDT"], channels=["candles"])


def test_unknown_candle_interval_for_the_exchange() -> None:
    s = CcxtSettings(provider="ccxt:binance", symbols=["BTC/USDT"], channels=["candles"])
    assert s.candle_intervals == ["1m"]
    tf = exchanges.timeframes("kraken")
    missing = next(i for i in ("1s", "1m", "5m", "15m", "1h", "4h", "1d") if i not in tf)
    with pytest.raises(ValidationError, match="candles; valid"):
        CcxtSettings(
            provider="ccxt:kraken",
            symbols=["BTC/USD"],
            channels=["candles"],
            candle_intervals=[missing],
        )


def test_urls_and_options_merge_over_the_defaults() -> None:
    s = CcxtSettings(
        provider="ccxt:binance",
        symbols=["BTC/USDT"],
        ws_url="ws://127.0.0.1:1/stream/ws",
        rest_url="http://127.0.0.1:1",
        options={"tradesLimit": 5000, "watchTrades": {"name": "trade"}},
        urls={"api": {"sapi": "http://127.0.0.1:2/sapi/v1"}},
    )
    config = s.exchange_config()
    assert config["options"]["tradesLimit"] == 5000
    assert config["options"]["watchTrades"] == {"name": "trade"}
    assert config["options"]["OHLCVLimit"] == 1000
    assert config["options"]["fetchMarkets"] == {"types": ["spot"]}
    api = config["urls"]["api"]
    assert api["ws"]["spot"] == "ws://127.0.0.1:1/stream/ws"
    assert api["public"] == "http://127.0.0.1:1/api/v3"
    assert api["sapi"] == "http://127.0.0.1:2/sapi/v1"
    assert config["enableRateLimit"] is True


def test_ws_url_needs_a_known_mapping() -> None:
    with pytest.raises(ValidationError, match="set `urls`"):
        CcxtSettings(provider="ccxt:kraken", symbols=["BTC/USD"], ws_url="ws://127.0.0.1:1")


def test_credentials_from_the_environment_stay_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKWIRE_CCXT_BINANCE_API_KEY", "k-123")
    monkeypatch.setenv("TICKWIRE_CCXT_BINANCE_SECRET", "s-456")
    s = CcxtSettings(provider="ccxt:binance", symbols=["BTC/USDT"])
    assert s.api_key is not None and s.api_key.get_secret_value() == "k-123"
    assert "k-123" not in repr(s) and "s-456" not in repr(s) and "s-456" not in str(s)
    config = s.exchange_config()
    assert (config["apiKey"], config["secret"]) == ("k-123", "s-456")
    assert "password" not in config


def test_the_family_resolves_and_bad_keys_are_named() -> None:
    # Plugins is what Pipeline resolves providers with (a Pipeline that never runs would leave
    # its backfill queue unclosed).
    plugins = Plugins()
    kraken = plugins.provider("ccxt:kraken")
    assert kraken.name == "ccxt" and kraken.capabilities.trade_ids == "unique"
    binance = plugins.provider("ccxt:binance")
    assert binance.capabilities.trade_ids == "sequential"
    with pytest.raises(ConfigError, match="bogus"):
        validate_entry(
            kraken.settings,
            {"provider": "ccxt:kraken", "symbols": ["BTC/USD"], "bogus": 1},
            "test",
            "sources[0].",
        )
