"""Settings: TOML + environment, and errors that name the key and the fix."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import jsonfeed
import pytest

from tickwire import ConfigError, Pipeline, load_settings
from tickwire.settings import parse_duration


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tickwire.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("15m", timedelta(minutes=15)),
        ("10s", timedelta(seconds=10)),
        ("250ms", timedelta(milliseconds=250)),
        ("36500d", timedelta(days=36500)),
        (5, timedelta(seconds=5)),
    ],
)
def test_durations(text, expected) -> None:
    assert parse_duration(text) == expected


def test_embedded_default_without_a_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.sources == [
        {
            "provider": "coinbase",
            "symbols": ["BTC-USD", "ETH-USD"],
            "channels": ["trades", "quotes"],
        }
    ]
    assert settings.sinks[0]["type"] == "sqlite"
    assert settings.candles.intervals == ["1m"]


def test_file_and_environment_override(tmp_path, monkeypatch) -> None:
    path = write(
        tmp_path,
        """
[[sources]]
provider = "jsonfeed"
symbols = ["A"]
[candles]
intervals = ["1m", "5m"]
""",
    )
    monkeypatch.setenv("TICKWIRE_CANDLES__INTERVALS", '["1h"]')
    assert load_settings(path).candles.intervals == ["1h"]


def test_unknown_top_level_key_is_named(tmp_path) -> None:
    path = write(tmp_path, "[candle]\nintervals = ['1m']\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "candle: unknown key" in str(err.value)
    assert "candles" in str(err.value)  # the valid keys are listed


def test_bad_interval_names_key_and_valid_values(tmp_path) -> None:
    path = write(tmp_path, "[candles]\nintervals = ['2m']\n")
    with pytest.raises(ConfigError, match=r"candles\.intervals\.0: .*'1m'"):
        load_settings(path)


def test_invalid_toml_is_a_config_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(write(tmp_path, "[[sources]\n"))


def test_source_key_validated_against_the_providers_model(tmp_path) -> None:
    path = write(
        tmp_path,
        """
[[sources]]
provider = "jsonfeed"
symbols = ["A"]
wsurl = "ws://x"
""",
    )
    settings = load_settings(path)
    with pytest.raises(ConfigError) as err:
        Pipeline(settings, plugins=[jsonfeed], entry_points=False)
    text = str(err.value)
    assert "sources[0].wsurl: unknown key" in text and "ws_url" in text


def test_unknown_provider_says_what_to_install(tmp_path) -> None:
    path = write(tmp_path, "[[sources]]\nprovider = 'nosuch'\nsymbols = ['A']\n")
    with pytest.raises(ConfigError, match="pip install tickwire-nosuch"):
        Pipeline(load_settings(path), plugins=[jsonfeed], entry_points=False)


def test_channel_the_provider_cannot_stream(tmp_path) -> None:
    path = write(tmp_path, "[[sources]]\nprovider='jsonfeed'\nsymbols=['A']\nchannels=['book']\n")
    with pytest.raises(ConfigError, match="cannot stream book; valid: trades"):
        Pipeline(load_settings(path), plugins=[jsonfeed], entry_points=False)


def test_duplicate_symbol_and_bad_duration(tmp_path) -> None:
    path = write(
        tmp_path,
        """
[[sources]]
provider = "jsonfeed"
symbols = ["A", "A"]
[[sinks]]
type = "null"
retention = "30 days"
""",
    )
    with pytest.raises(ConfigError) as err:
        Pipeline(load_settings(path), plugins=[jsonfeed], entry_points=False)
    assert "listed twice" in str(err.value)
