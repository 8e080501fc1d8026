"""Structured log events: every line names its event so users can alert on it.

Library code calls :func:`emit`; it never configures logging (embedding applications do, or the
CLI does with :func:`configure`). The event name travels in the record's ``event`` attribute and
the fields in ``fields``, so a JSON formatter can print them as keys.

Nothing secret reaches a line: :class:`~pydantic.SecretStr` values print as ``**********``, and
every URL in a message, a field or an exception's text loses its user info, query and fragment
(where tokens hide: ``https://host/path?token=…`` prints as ``https://host/path?…``), whether the
text came from tickwire or from a library's exception.
"""

from __future__ import annotations

import json
import logging
import math
import re
import sys
import time
from typing import Any

from pydantic import SecretStr

logger = logging.getLogger("tickwire")

MASK = "**********"
#: A URL with a scheme: ``ws://``, ``https://``, ``postgresql://`` … up to a space or a quote.
_URL = re.compile(r"""\b([a-zA-Z][a-zA-Z0-9+.\-]*)://([^\s'"<>`]+)""")


def _clean_url(match: re.Match[str]) -> str:
    scheme, rest = match.group(1), match.group(2)
    tail = ""
    cut = len(rest)
    for mark in ("?", "#"):
        at = rest.find(mark)
        if at != -1 and at < cut:
            cut = at
    if cut < len(rest):
        tail = "?…" if rest[cut] == "?" else ""
    rest = rest[:cut]
    slash = rest.find("/")
    authority, path = (rest, "") if slash == -1 else (rest[:slash], rest[slash:])
    if "@" in authority:
        authority = authority.rsplit("@", 1)[1]
    return f"{scheme}://{authority}{path}{tail}"


def redact(text: str) -> str:
    """``text`` with every URL's user info, query and fragment removed (what logs may show)."""
    if "://" not in text:
        return text
    return _URL.sub(_clean_url, text)


def _scrub(value: Any) -> Any:
    """A field value safe to log: secrets masked, URLs redacted, containers walked."""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    return redact(str(value))


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    text = str(value)
    return repr(text) if (" " in text or "\n" in text or not text) else text


def emit(level: int, event: str, message: str = "", /, **fields: Any) -> None:
    """Log ``event`` (e.g. ``connection.retry``) with ``fields`` at ``level``.

    Secrets are masked and URLs redacted (see the module docstring) before anything is handed
    to :mod:`logging`, so an application's own handlers get clean records too.
    """
    if not logger.isEnabledFor(level):
        return
    clean = {k: _scrub(v) for k, v in fields.items()}
    message = redact(message)
    text = " ".join(f"{k}={_show(v)}" for k, v in clean.items())
    line = f"{event} {text}".rstrip()
    if message:
        line = f"{line}: {message}"
    logger.log(level, line, extra={"event": event, "fields": clean, "detail": message})


def _json_value(value: Any) -> Any:
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None:
        return None
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    return redact(str(value))


#: Keys the JSON formatter writes itself; a field of the same name is written as ``field_<k>``.
_RESERVED = frozenset({"time", "level", "event", "logger", "message", "exception"})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``event``, the fields, ``message``.

    A record that did not come from :func:`emit` (another logger under ``tickwire``) gets
    ``event`` ``log`` and its ``logger`` name. Exception text is redacted like messages.
    """

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "event": event if isinstance(event, str) and event else "log",
        }
        if not isinstance(event, str):
            out["logger"] = record.name
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for k, v in fields.items():
                out[f"field_{k}" if k in _RESERVED else str(k)] = _json_value(v)
        detail = getattr(record, "detail", None)
        try:
            message = detail if isinstance(detail, str) else record.getMessage()
        except Exception:  # a bad %-format from a foreign logger must not lose the line
            message = str(record.msg)
        out["message"] = redact(message)
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exception"] = redact(record.exc_text)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``HH:MM:SS level event key=value …: message`` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        text = f"{stamp} {record.levelname.lower():<7} {redact(message)}"
        if record.exc_info:
            text += "\n" + redact(self.formatException(record.exc_info))
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


__all__ = ("JsonFormatter", "TextFormatter", "configure", "emit", "logger", "redact")
