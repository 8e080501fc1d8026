"""Settings, registration and connection planning (one connection per API key)."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest
from pydantic import ValidationError

import tickwire_finnhub
from tickwire._runner.subscribe import plan_connections
from tickwire.pipeline import Pipeline
from tickwire.protocols import ProviderInfo
from tickwire.settings import ConfigError, Settings
from tickwire_finnhub import CAPABILITIES, LIMITS, FinnhubSettings
from tickwire_finnhub.connect import connector_for, redact, with_token


def info() -> ProviderInfo:
    found: list[ProviderInfo] = []
    tickwire_finnhub.tickwire_register_providers(found.append)
    (registered,) = found
    return registered


def symbols(n: int) -> list[str]:
    return [f"SYM{i}" for i in range(n)]


def test_entry_point_and_registration() -> None:
    names = {ep.name: ep.value for ep in entry_points(group="tickwire")}
    assert names["finnhub"] == "tickwire_finnhub"
    registered = info()
    assert registered.name == "finnhub"
    assert registered.settings is FinnhubSettings
    assert registered.capabilities == CAPABILITIES
    assert registered.capabilities.channels == frozenset({"trades"})
    assert registered.capabilities.trade_ids == "unique"
    assert registered.capabilities.backfill == frozenset(
        {"candles:1m", "candles:5m", "candles:15m", "candles:1h", "candles:1d"}
    )
    assert registered.limits == LIMITS
    assert LIMITS.connections_per_key == 1
    assert LIMITS.symbols_per_connection == 50
    assert LIMITS.keepalive == 150
    assert LIMITS.rest_requests_per_second == 1.0
    assert registered.simulator is not None


def test_api_key_is_required_and_the_error_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TICKWIRE_FINNHUB_API_KEY", raising=False)
    with pytest.raises(ValidationError, match="TICKWIRE_FINNHUB_API_KEY"):
        FinnhubSettings(symbols=["AAPL"])


def test_api_key_from_the_environment_is_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKWIRE_FINNHUB_API_KEY", "env-secret-123")
    s = FinnhubSettings(symbols=["AAPL"])
    assert s.token == "env-secret-123"
    assert "env-secret-123" not in repr(s)
    assert "env-secret-123" not in str(s.model_dump())


def test_more_symbols_than_the_plan_is_refused_at_config_time() -> None:
    with pytest.raises(ValidationError) as exc:
        FinnhubSettings(api_key="k", symbols=symbols(60))
    assert (
        "finnhub allows 50 symbols per API key on your plan (setting max_symbols); "
        "you listed 60" in str(exc.value)
    )
    # Through the pipeline, the same refusal is a ConfigError naming the source.
    settings = Settings(
        sources=[{"provider": "finnhub", "api_key": "k", "symbols": symbols(60)}], sinks=[]
    )
    with pytest.raises(ConfigError, match="you listed 60"):
        Pipeline(settings, plugins=[tickwire_finnhub], entry_points=False)


def test_a_bigger_plan_keeps_one_connection() -> None:
    s = FinnhubSettings(api_key="k", symbols=symbols(250), max_symbols=250)
    assert plan_connections(s, info()) == [symbols(250)]
    assert plan_connections(FinnhubSettings(api_key="k", symbols=symbols(50)), info()) == [
        symbols(50)
    ]


def test_the_runner_refuses_a_plan_needing_two_connections_for_one_key() -> None:
    # If a source ever asked for fewer symbols per connection than it lists, the runner
    # would need a second connection: connections_per_key=1 refuses that at config time.
    class Split(FinnhubSettings):
        @property
        def symbols_per_connection(self) -> int:
            return 10

    s = Split(api_key="k", symbols=symbols(11))
    with pytest.raises(ConfigError, match=r"needs 2 connections .* allows 1 per credential"):
        plan_connections(s, info())


def test_only_trades_can_be_streamed() -> None:
    with pytest.raises(ValidationError, match="trades only"):
        FinnhubSettings(api_key="k", symbols=["AAPL"], channels=["trades", "quotes"])


@pytest.mark.parametrize(
    ("symbol", "market"),
    [
        ("AAPL", "stock"),
        ("BRK.B", "stock"),
        ("OANDA:EUR_USD", "forex"),
        ("IC MARKETS:1", "forex"),
        ("fxcm:EUR/USD", "forex"),
        ("BINANCE:BTCUSDT", "crypto"),
        ("COINBASE:BTC-USD", "crypto"),
    ],
)
def test_market_by_symbol_form(symbol: str, market: str) -> None:
    assert FinnhubSettings(api_key="k", symbols=[symbol]).market_of(symbol) == market


def test_market_override() -> None:
    s = FinnhubSettings(api_key="k", symbols=["NEW:XY"], markets={"NEW:XY": "forex"})
    assert s.market_of("NEW:XY") == "forex"


def test_url_carries_the_token_and_redaction_hides_it() -> None:
    s = FinnhubSettings(api_key="s3cr3t", symbols=["AAPL"], ws_url="ws://127.0.0.1:1/?a=b")
    url = connector_for(s).endpoint(["AAPL"])
    assert url == "ws://127.0.0.1:1/?a=b&token=s3cr3t"
    assert with_token("wss://ws.finnhub.io", "k") == "wss://ws.finnhub.io?token=k"
    assert "s3cr3t" not in redact(f"> GET /?a=b&token=s3cr3t HTTP/1.1 {url}")
