"""The connect stage: the key's one websocket, ``<ws_url>?token=<API key>``.

The token travels in the URL's query, as Finnhub requires, so it must never reach a log line.
tickwire's runner logs ``str(exc)`` of connection errors, and websockets' messages carry no
URL query (``InvalidURI`` is redacted by core). But the ``websockets`` client logs the request
line ``> GET /?token=... HTTP/1.1`` at DEBUG on logger ``websockets.client``, and
:class:`~tickwire.transport.WebSocketConnector` has no way to pass it another logger. Until it
does, :func:`connector_for` installs :class:`RedactTokens` on that logger (once; it only rewrites
``token=`` query values and ``X-Finnhub-Token`` header values, for every user of the logger).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tickwire.transport import WebSocketConnector
from tickwire_finnhub.settings import FinnhubSettings

REDACTED = "**********"
_TOKEN_QUERY = re.compile(r"(?i)(token=)[^&\s#'\"]+")
_SECRET_HEADERS = frozenset({"x-finnhub-token"})


def redact(text: str) -> str:
    """``text`` with every ``token=<value>`` query value replaced by ``**********``."""
    return _TOKEN_QUERY.sub(r"\g<1>" + REDACTED, text)


class RedactTokens(logging.Filter):
    """Rewrites a record so that no ``token=`` value or ``X-Finnhub-Token`` header shows."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record in place; never drop it."""
        if isinstance(record.msg, str) and "token" in record.msg.lower():
            record.msg = redact(record.msg)
        args = record.args
        if isinstance(args, tuple) and args:
            if len(args) == 2 and isinstance(args[0], str) and args[0].lower() in _SECRET_HEADERS:
                record.args = (args[0], REDACTED)
            elif any(isinstance(a, str) and "token" in a.lower() for a in args):
                record.args = tuple(redact(a) if isinstance(a, str) else a for a in args)
        return True


_FILTER = RedactTokens()


def protect_logger(logger: logging.Logger) -> logging.Logger:
    """Install the token filter on ``logger`` (idempotent); return the logger."""
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger


def with_token(url: str, token: str) -> str:
    """``url`` with ``token=<token>`` in its query (replacing any token already there)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    query.append(("token", token))
    return urlunsplit(parts._replace(query=urlencode(query)))


def connector_for(source: FinnhubSettings) -> WebSocketConnector:
    """A :class:`~tickwire.transport.WebSocketConnector` for ``source.ws_url`` plus the token.

    The token is read from the settings' ``SecretStr`` only when a connection opens.
    Finnhub pings every minute or two; the client's own websocket pings stay on (20 s) to
    notice a dead TCP connection sooner than the runner's keep-alive window would.
    """
    protect_logger(logging.getLogger("websockets.client"))

    def url_for(symbols: Sequence[str]) -> str:
        return with_token(source.ws_url, source.token)

    return WebSocketConnector(url_for=url_for)


__all__ = ("REDACTED", "RedactTokens", "connector_for", "protect_logger", "redact", "with_token")
