"""Structured logs: one JSON object per line naming its event, no secrets, no URL queries."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from tickwire._log import JsonFormatter, TextFormatter, emit, logger, redact


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, io.StringIO]]:
    """The ``tickwire`` logger writing JSON to one buffer and text to another."""
    as_json, as_text = io.StringIO(), io.StringIO()
    handlers = []
    for stream, formatter in ((as_json, JsonFormatter()), (as_text, TextFormatter())):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handlers.append(handler)
        logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield as_json, as_text
    logger.setLevel(old)
    for handler in handlers:
        logger.removeHandler(handler)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    out = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert all(isinstance(o, dict) and isinstance(o["event"], str) and o["event"] for o in out)
    return out


def test_redact_keeps_scheme_host_and_path_only() -> None:
    assert redact("GET https://api.example.com/v1/quote?token=abc&s=X failed") == (
        "GET https://api.example.com/v1/quote?… failed"
    )
    assert redact("wss://user:pw@ws.example.com:443/feed#frag") == "wss://ws.example.com:443/feed"
    assert redact("'postgresql://app:hunter2@db/test?sslmode=require'") == (
        "'postgresql://db/test?…'"
    )
    assert redact("no url here ?x=1") == "no url here ?x=1"


def test_every_line_is_one_json_object_without_secrets(
    captured: tuple[io.StringIO, io.StringIO],
) -> None:
    as_json, as_text = captured
    secret = SecretStr("s3cr3t-key")
    emit(
        40,
        "connection.failed",
        "Client error '401' for url 'https://finnhub.example/api/v1/quote?token=s3cr3t-key'"
        "\nline 2",
        source="finnhub#0",
        reason="auth",
        api_key=secret,
        url="wss://ws.example/?token=s3cr3t-key",
        nested={"key": secret, "urls": ["http://h/p?apikey=s3cr3t-key"]},
        delay=float("nan"),
        message="a field named like a reserved key",
    )
    try:
        raise ConnectionError("cannot reach https://rest.example/x?signature=s3cr3t-key")
    except ConnectionError:
        logging.getLogger("tickwire.some.library").exception(
            "failed for %s", "https://rest.example/x?signature=s3cr3t-key"
        )
    text = as_json.getvalue()
    assert len(text.splitlines()) == 2
    assert "s3cr3t-key" not in text
    assert "s3cr3t-key" not in as_text.getvalue()
    first, second = lines(as_json)
    assert first["event"] == "connection.failed"
    assert first["level"] == "error"
    assert first["reason"] == "auth"
    assert first["api_key"] == "**********"
    assert first["url"] == "wss://ws.example/?…"
    assert first["nested"] == {"key": "**********", "urls": ["http://h/p?…"]}
    assert first["delay"] == "nan"
    assert first["field_message"] == "a field named like a reserved key"
    assert first["message"] == (
        "Client error '401' for url 'https://finnhub.example/api/v1/quote?…'\nline 2"
    )
    assert second["event"] == "log"
    assert second["logger"] == "tickwire.some.library"
    assert second["message"] == "failed for https://rest.example/x?…"
    assert "ConnectionError: cannot reach https://rest.example/x?…" in str(second["exception"])


def test_records_handed_to_other_handlers_are_clean_too() -> None:
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    logger.addHandler(keep)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        emit(
            30,
            "sink.retry",
            "dsn postgresql://u:pw@h/db?password=pw",
            sink="pg",
            token=SecretStr("t"),
        )
    finally:
        logger.removeHandler(keep)
        logger.setLevel(old)
    (record,) = seen
    assert record.getMessage() == "sink.retry sink=pg token=**********: dsn postgresql://h/db?…"
