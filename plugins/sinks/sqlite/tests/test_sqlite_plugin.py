"""Discovery through the entry point, the hooks and the settings model."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

import tickwire_sqlite
from tickwire._plugins import Plugins
from tickwire.builtin.sinks import NullSinkSettings
from tickwire_sqlite import SqliteSettings, SqliteSink


def test_the_plugin_is_found_through_its_entry_point() -> None:
    plugins = Plugins()
    info = plugins.sinks["sqlite"]
    assert info.settings is SqliteSettings
    record = next(r for r in plugins.records if r.name == "sqlite")
    assert record.distribution == "tickwire-sqlite"
    assert record.sinks == ["sqlite"]
    sink = plugins.sink_for(SqliteSettings(type="sqlite", path=Path("x.db")))
    assert isinstance(sink, SqliteSink)


def test_the_sink_hook_ignores_other_sinks() -> None:
    assert tickwire_sqlite.tickwire_sink(NullSinkSettings(type="null")) is None


def test_settings_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("PATH", "RETENTION", "BOOK", "SYNCHRONOUS", "CACHE_SIZE"):
        monkeypatch.delenv(f"TICKWIRE_SQLITE_{key}", raising=False)
    settings = SqliteSettings(type="sqlite")
    assert settings.path == Path("tickwire.db")
    assert settings.retention == timedelta(days=30)
    assert settings.book is False
    assert settings.synchronous == "normal"
    assert settings.cache_size == 64 * 1024 * 1024


def test_settings_from_config_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKWIRE_SQLITE_PATH", "/data/ticks.db")
    settings = SqliteSettings(type="sqlite", path="ignored.db", retention="36500d", book=True)  # type: ignore[arg-type]
    assert settings.path == Path("/data/ticks.db")  # the environment overrides the file
    assert settings.retention == timedelta(days=36500)
    assert settings.book is True


def test_settings_refuse_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ValidationError, match="pth"):
        SqliteSettings(type="sqlite", pth="x.db")  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="synchronous"):
        SqliteSettings(type="sqlite", synchronous="off")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="cache_size"):
        SqliteSettings(type="sqlite", cache_size=1024)
