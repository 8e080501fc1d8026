"""Connections every websocket provider shares, on the ``websockets`` library (or picows).

A provider's ``tickwire_connect`` usually returns ``WebSocketConnector(url)``; the runner opens,
reads, paces and reopens it. Failures to connect are raised as
:class:`~tickwire.protocols.ConnectionFailed` with a one-word ``reason`` (refused, dns, tls,
http, timeout) so logs and alerts can tell them apart.

``transport="picows"`` (``tickwire[picows]``) swaps the library under the same interface: TLS,
keep-alive pings, close codes and log redaction behave alike (:mod:`tickwire._picows`).

Both connections offer :meth:`~WebSocketConnection.batches` beside ``__aiter__``: the frames
that arrived together, as one list, which the runner hands through the pipeline at once.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import websockets
from websockets.asyncio.client import ClientConnection, connect

from tickwire.protocols import Connection, ConnectionFailed, Frame
from tickwire.tls import client_context


class _RedactQuery(logging.Filter):
    """Drops query strings (where tokens live) from what the websockets library logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                _QUERY.sub("?<redacted>", a) if isinstance(a, str) else a for a in args
            )
        if isinstance(record.msg, str):
            record.msg = _QUERY.sub("?<redacted>", record.msg)
        return True


_QUERY = re.compile(r"\?[^\s]*")
#: The logger handed to websockets: its DEBUG lines include the request line, query and all.
WS_LOGGER = logging.getLogger("tickwire.websockets")
WS_LOGGER.addFilter(_RedactQuery())
#: The most frames one batch holds (bounds the work done before the loop runs anything else).
MAX_BATCH = 1024
Transport: TypeAlias = Literal["websockets", "picows"]


class WebSocketConnection:
    """A :class:`~tickwire.protocols.Connection` over one ``websockets`` client connection."""

    __slots__ = ("_ws",)

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    async def send(self, message: Frame) -> None:
        """Send one text (``str``) or binary (``bytes``) message."""
        await self._ws.send(message)

    def __aiter__(self) -> AsyncIterator[Frame]:
        """Yield frames until the server closes; a close with an error code raises.

        The library's own iterator, not a wrapper around it: one async generator less per
        frame on the hot path.
        """
        return self._ws.__aiter__()

    async def batches(self) -> AsyncIterator[list[Frame]]:
        """Yield lists of frames: the first one awaited, plus those already received behind it.

        Ends when the server closes normally; a close with an error code raises, as
        ``__aiter__`` does. Only complete messages already buffered are taken, so a batch never
        waits for more data.
        """
        ws = self._ws
        recv = ws.recv
        frames = getattr(getattr(ws, "recv_messages", None), "frames", None)
        buffered = getattr(frames, "queue", None)
        if not isinstance(buffered, deque):  # another websockets layout: one frame at a time
            buffered = deque()
        try:
            while True:
                batch = [await recv()]
                while buffered and buffered[0].fin and len(batch) < MAX_BATCH:
                    batch.append(await recv())
                yield batch
        except websockets.ConnectionClosedOK:
            return

    @property
    def close_reason(self) -> str | None:
        """The close code and reason the server gave, once the connection is closed."""
        rcvd = self._ws.protocol.close_rcvd
        return None if rcvd is None else f"{rcvd.code} {rcvd.reason}".strip()


def failure(url: str, exc: BaseException) -> ConnectionFailed:
    """The :class:`ConnectionFailed` for an error raised while connecting to ``url``."""
    reason = _reason_for(exc)
    return ConnectionFailed(
        f"cannot connect to {safe_url(url)} ({_REASON_TEXT.get(reason, reason)}): {_describe(exc)}",
        reason,
    )


def _reason_for(exc: BaseException) -> str:
    if isinstance(exc, socket.gaierror):
        return "dns"
    if isinstance(exc, ssl.SSLError):
        return "tls"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, websockets.InvalidStatus):
        status = exc.response.status_code
        return "auth" if status in (401, 403) else "http"
    if isinstance(exc, websockets.InvalidHandshake):
        return "protocol"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    return "refused"


class WebSocketConnector:
    """Opens websocket connections to ``url`` (or to what ``url_for(symbols)`` returns).

    :param url: the endpoint, ``ws://`` or ``wss://``.
    :param url_for: build the endpoint from the connection's symbols (tokens in the query, say);
        takes precedence over ``url``.
    :param open_timeout: seconds for TCP + TLS + the websocket handshake.
    :param max_size: largest frame accepted (order-book snapshots can be megabytes).
    :param compression: ``"deflate"`` to offer permessage-deflate, ``None`` for none.
    :param ssl_context: for private CAs and test servers.
    :param ca_file: a CA bundle to trust (``SourceSettings.ca_file``), if no ``ssl_context``.
    :param headers: extra HTTP headers on the handshake (never logged).
    :param ping_interval: seconds between keep-alive pings (``None``: none); a ping unanswered
        for ``ping_timeout`` seconds drops the connection.
    :param transport: ``"websockets"`` (the default) or ``"picows"`` (``tickwire[picows]``:
        Cython frame parsing, no permessage-deflate).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        url_for: Callable[[Sequence[str]], str] | None = None,
        open_timeout: float = 10.0,
        max_size: int | None = 64 * 1024 * 1024,
        compression: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | os.PathLike[str] | None = None,
        headers: dict[str, str] | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        transport: Transport = "websockets",
    ) -> None:
        if url is None and url_for is None:
            raise ValueError("WebSocketConnector needs url or url_for")
        if transport not in ("websockets", "picows"):
            raise ValueError(f"unknown websocket transport {transport!r}")
        if transport == "picows" and compression is not None:
            raise ValueError(
                "the picows transport has no permessage-deflate: "
                "set compression off or use transport = 'websockets'"
            )
        self.url = url
        self.transport: Transport = transport
        self._url_for = url_for
        self._open_timeout = open_timeout
        self._max_size = max_size
        self._headers = headers
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._kwargs: dict[str, Any] = {
            "open_timeout": open_timeout,
            "max_size": max_size,
            "compression": compression,
            "ping_interval": ping_interval,
            "ping_timeout": ping_timeout,
            "max_queue": 4096,
            "additional_headers": headers,
            "logger": WS_LOGGER,
        }
        if ssl_context is None and ca_file is not None:
            ssl_context = client_context(ca_file)
        self._ssl = ssl_context

    def endpoint(self, symbols: Sequence[str]) -> str:
        """The URL a connection for ``symbols`` goes to."""
        if self._url_for is not None:
            return self._url_for(symbols)
        assert self.url is not None
        return self.url

    def open(self, symbols: Sequence[str]) -> AbstractAsyncContextManager[Connection]:
        """Connect, yield the connection, close it on exit."""
        if self.transport == "picows":
            from tickwire._picows import open_picows

            url = self.endpoint(symbols)
            return open_picows(
                url,
                ssl_context=self._tls(url),
                open_timeout=self._open_timeout,
                max_size=self._max_size,
                headers=self._headers,
                ping_interval=self._ping_interval,
                ping_timeout=self._ping_timeout,
                logger=WS_LOGGER,
            )
        return self._open_websockets(self.endpoint(symbols))

    def _tls(self, url: str) -> ssl.SSLContext | None:
        """The TLS context for ``url``: the one given, else the process-wide default for
        wss:// (the client libraries would load the CA store anew on every connect)."""
        if self._ssl is not None or not url.startswith("wss://"):
            return self._ssl
        return client_context()

    @asynccontextmanager
    async def _open_websockets(self, url: str) -> AsyncIterator[WebSocketConnection]:
        tls = self._tls(url)
        kwargs = self._kwargs if tls is None else {**self._kwargs, "ssl": tls}
        try:
            ws = await connect(url, **kwargs)
        except (OSError, TimeoutError, websockets.InvalidHandshake, websockets.InvalidURI) as exc:
            raise failure(url, exc) from None
        try:
            yield WebSocketConnection(ws)
        finally:
            await ws.close()


_REASON_TEXT = {
    "dns": "host name not found",
    "tls": "TLS handshake failed",
    "timeout": "timed out",
    "auth": "refused our credentials",
    "http": "HTTP error instead of a websocket",
    "protocol": "not a websocket server",
    "refused": "connection refused",
}


def safe_url(url: str) -> str:
    """``url`` without user info, query or fragment: what may be shown in logs (tokens hide in
    query strings)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid URL>"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    # Never echo a URL's query (tokens live there): websockets' messages do not include it,
    # but InvalidURI does.
    if isinstance(exc, websockets.InvalidURI):
        return "invalid websocket URL"
    return text


__all__ = ("MAX_BATCH", "Transport", "WebSocketConnection", "WebSocketConnector", "safe_url")
