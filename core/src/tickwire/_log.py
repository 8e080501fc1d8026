"""Structured log events: every line names its event so users can alert on it.

Library code calls :func:`emit`; it never configures logging (embedding applications do, or the
CLI does with :func:`configure`). The event name travels in the record's ``event`` attribute and
the fields in ``fields``, so a JSON formatter can print them as keys.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from pydantic import SecretStr

logger = logging.getLogger("tickwire")


def _show(value: Any) -> str:
    if isinstance(value, SecretStr):
        return "**********"
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    return repr(text) if (" " in text or not text) else text


def emit(level: int, event: str, message: str = "", /, **fields: Any) -> None:
    """Log ``event`` (e.g. ``connection.retry``) with ``fields`` at ``level``."""
    if not logger.isEnabledFor(level):
        return
    clean = {k: ("**********" if isinstance(v, SecretStr) else v) for k, v in fields.items()}
    text = " ".join(f"{k}={_show(v)}" for k, v in clean.items())
    line = f"{event} {text}".rstrip()
    if message:
        line = f"{line}: {message}"
    logger.log(level, line, extra={"event": event, "fields": clean, "detail": message})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``event``, the fields, ``message``."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": getattr(record, "event", record.name),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(
                {k: v if isinstance(v, int | float | bool) else str(v) for k, v in fields.items()}
            )
        detail = getattr(record, "detail", None)
        out["message"] = detail if detail is not None else record.getMessage()
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level event key=value …: message`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        text = f"{stamp} {record.levelname.lower():<7} {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Set up the ``tickwire`` logger for the CLI: text on a TTY, JSON lines otherwise."""
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


__all__ = ("JsonFormatter", "TextFormatter", "configure", "emit", "logger")
