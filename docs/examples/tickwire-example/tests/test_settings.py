"""Settings: defaults, environment overrides, and a secret that never shows."""

from __future__ import annotations

import pytest

from tickwire_example.settings import ExampleSettings


def test_api_key_from_the_environment_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TICKWIRE_EXAMPLE_API_KEY", "s3cret-value")
    settings = ExampleSettings(symbols=["AAA-USD"])
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == "s3cret-value"
    assert "s3cret-value" not in repr(settings)
    assert "s3cret-value" not in str(settings.model_dump())


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="symbolz"):
        ExampleSettings(symbols=["AAA-USD"], symbolz=["typo"])  # type: ignore[call-arg]
