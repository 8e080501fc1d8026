"""Registration through the entry point, and the settings model."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

import tickwire_timescale
from tickwire.protocols import CoverageSink, RetentionSink, Sink, SinkInfo
from tickwire.settings import SinkSettings
from tickwire_timescale import TimescaleSettings, TimescaleSink


def test_registers_the_timescale_sink() -> None:
    seen: list[SinkInfo] = []
    tickwire_timescale.tickwire_register_sinks(seen.append)
    assert [(i.name, i.settings) for i in seen] == [("timescale", TimescaleSettings)]


def test_builds_only_its_own_sink() -> None:
    built = tickwire_timescale.tickwire_sink(TimescaleSettings())
    assert isinstance(built, TimescaleSink)
    assert isinstance(built, Sink) and isinstance(built, RetentionSink)
    assert isinstance(built, CoverageSink)
    assert tickwire_timescale.tickwire_sink(SinkSettings(type="other")) is None


def test_entry_point_is_declared() -> None:
    from importlib.metadata import entry_points

    names = {ep.name: ep.value for ep in entry_points(group="tickwire")}
    assert names.get("timescale") == "tickwire_timescale"


def test_defaults() -> None:
    settings = TimescaleSettings()
    assert settings.db_schema == "tickwire"
    assert settings.retention == timedelta(days=30)
    assert settings.timescaledb == "auto"


def test_dsn_is_a_secret() -> None:
    settings = TimescaleSettings(dsn="postgresql://u:hunter2@127.0.0.1/db")  # type: ignore[arg-type]
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


def test_schema_key_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TimescaleSettings(schema="market").db_schema == "market"  # type: ignore[call-arg]
    monkeypatch.setenv("TICKWIRE_TIMESCALE_SCHEMA", "from_env")
    assert TimescaleSettings(schema="market").db_schema == "from_env"  # type: ignore[call-arg]


@pytest.mark.parametrize("bad", ["Market", "1abc", "a-b", "x" * 49, "a;drop"])
def test_schema_must_be_a_plain_identifier(bad: str) -> None:
    with pytest.raises(ValidationError, match="lower-case SQL identifier"):
        TimescaleSettings(schema=bad)  # type: ignore[call-arg]


def test_unknown_key_is_refused() -> None:
    with pytest.raises(ValidationError, match="extra"):
        TimescaleSettings(tabel="x")  # type: ignore[call-arg]


def test_long_retention_is_valid() -> None:
    assert TimescaleSettings(retention="36500d").retention == timedelta(days=36500)  # type: ignore[arg-type]
