"""The picows websocket transport (``transport = "picows"``, extra ``tickwire[picows]``).

picows parses frames in Cython and calls back once per frame; this module turns those callbacks
into the :class:`~tickwire.protocols.Connection` interface the runner reads: ``batches()``
yields the frames one read of the socket delivered, as a list, and ``__aiter__`` one frame at a
time. It behaves like the ``websockets`` connection on everything the runner relies on:

* text frames arrive as ``str`` (UTF-8 checked), binary ones as ``bytes``; fragmented messages
  are reassembled;
* a close with code 1000 or 1001 ends the iteration; any other close, or a connection lost
  without a close frame, raises :class:`websockets.ConnectionClosedError` carrying the code (so
  rate-limit close codes are told apart the same way); the close is answered, as the protocol
  wants;
* keep-alive pings every ``ping_interval`` seconds of silence; no pong within ``ping_timeout``
  drops the connection;
* when the reader falls behind, the socket stops being read (``pause_reading``) until it
  catches up, so memory stays bounded;
* it logs through the same redacting logger, and connection failures are
  :class:`~tickwire.protocols.ConnectionFailed` with the same reasons.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import websockets
from websockets.frames import Close

from tickwire.protocols import ConnectionFailed, Frame
from tickwire.transport import MAX_BATCH, failure, safe_url

if TYPE_CHECKING:
    import picows

#: Frames buffered beyond this pause reading from the socket (websockets' ``max_queue``).
HIGH_WATER = 4096
_OK_CODES = frozenset({1000, 1001})


def _picows() -> Any:
    try:
        import picows
    except ImportError:
        raise ConnectionFailed(
            "transport = 'picows' needs the picows package: pip install 'tickwire[picows]'",
            "protocol",
        ) from None
    return picows


def _listener_class() -> type:
    pw = _picows()
    text, binary, cont, close = (
        pw.WSMsgType.TEXT,
        pw.WSMsgType.BINARY,
        pw.WSMsgType.CONTINUATION,
        pw.WSMsgType.CLOSE,
    )

    class Listener(pw.WSListener):  # type: ignore[misc,name-defined]
        """Collects frames for the reader; wakes it once per read of the socket."""

        def __init__(self, max_size: int | None) -> None:
            self.frames: list[Frame] = []
            self.waiter: asyncio.Future[None] | None = None
            self.transport: picows.WSTransport | None = None
            self.disconnected = False
            self.paused = False
            self.max_size = max_size
            self._parts: list[bytes] | None = None
            self._text = False

        def on_ws_connected(self, transport: picows.WSTransport) -> None:
            self.transport = transport

        def on_ws_frame(self, transport: picows.WSTransport, frame: picows.WSFrame) -> None:
            kind = frame.msg_type
            if kind is text and frame.fin:
                self.frames.append(frame.get_payload_as_utf8_text())
            elif kind is binary and frame.fin:
                self.frames.append(frame.get_payload_as_bytes())
            elif kind is close:
                # Answer the close (the protocol wants it), then drop the socket.
                transport.send_close(frame.get_close_code(), frame.get_close_message())
                transport.disconnect()
                return
            elif kind is text or kind is binary:
                self._parts = [frame.get_payload_as_bytes()]
                self._text = kind is text
            elif kind is cont and self._parts is not None:
                self._parts.append(frame.get_payload_as_bytes())
                if self.max_size is not None and sum(map(len, self._parts)) > self.max_size:
                    transport.send_close(pw.WSCloseCode.MESSAGE_TOO_BIG)
                    transport.disconnect()
                    return
                if frame.fin:
                    data = b"".join(self._parts)
                    self._parts = None
                    self.frames.append(data.decode() if self._text else data)
            # pings and pongs: picows answers and tracks them
            if frame.last_in_buffer:  # once per read of the socket, not per frame
                self.wake()
                if len(self.frames) > HIGH_WATER and not self.paused:
                    self.paused = True
                    transport.underlying_transport.pause_reading()

        def wake(self) -> None:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

        def on_ws_disconnected(self, transport: picows.WSTransport) -> None:
            self.disconnected = True
            self.wake()

    return Listener


class PicowsConnection:
    """A :class:`~tickwire.protocols.Connection` over one picows client connection."""

    def __init__(self, transport: picows.WSTransport, listener: Any) -> None:
        self._transport = transport
        self._listener = listener
        pw = _picows()
        self._text = pw.WSMsgType.TEXT
        self._binary = pw.WSMsgType.BINARY

    async def send(self, message: Frame) -> None:
        """Send one text (``str``) or binary (``bytes``) message."""
        if self._listener.disconnected:
            raise self._closed()
        if isinstance(message, str):
            self._transport.send(self._text, message.encode())
        else:
            self._transport.send(self._binary, message)

    async def batches(self) -> AsyncIterator[list[Frame]]:
        """Yield the frames each read of the socket delivered (at most ``MAX_BATCH`` at once).

        Ends when the server closes with 1000 or 1001; raises
        :class:`websockets.ConnectionClosedError` for any other end.
        """
        listener = self._listener
        loop = asyncio.get_running_loop()
        while True:
            frames = listener.frames
            if not frames:
                if listener.disconnected:
                    error = self._closed()
                    if isinstance(error, websockets.ConnectionClosedOK):
                        return
                    raise error
                listener.waiter = loop.create_future()
                try:
                    await listener.waiter
                finally:
                    listener.waiter = None
                continue
            if len(frames) > MAX_BATCH:
                batch = frames[:MAX_BATCH]
                del frames[:MAX_BATCH]
            else:
                batch = frames
                listener.frames = []
            if listener.paused and len(listener.frames) <= HIGH_WATER // 4:
                listener.paused = False
                self._transport.underlying_transport.resume_reading()
            yield batch

    async def __aiter__(self) -> AsyncIterator[Frame]:
        """Yield frames one at a time (see :meth:`batches`)."""
        async for batch in self.batches():
            for frame in batch:
                yield frame

    def _closed(self) -> websockets.ConnectionClosed:
        """The exception ``websockets`` would raise for how this connection ended."""
        handshake = self._transport.close_handshake
        rcvd = sent = None
        rcvd_then_sent = None
        if handshake is not None:
            if handshake.recv is not None:
                rcvd = Close(int(handshake.recv.code.value), handshake.recv.reason)
            if handshake.sent is not None:
                sent = Close(int(handshake.sent.code.value), handshake.sent.reason)
            if rcvd is not None and sent is not None:
                rcvd_then_sent = bool(handshake.recv_then_sent)
        if rcvd is not None and rcvd.code in _OK_CODES and (sent is None or sent.code in _OK_CODES):
            return websockets.ConnectionClosedOK(rcvd, sent, rcvd_then_sent)
        return websockets.ConnectionClosedError(rcvd, sent, rcvd_then_sent)

    @property
    def close_reason(self) -> str | None:
        """The close code and reason the server gave, once the connection is closed."""
        handshake = self._transport.close_handshake
        if handshake is None or handshake.recv is None:
            return None
        return f"{int(handshake.recv.code.value)} {handshake.recv.reason}".strip()

    async def aclose(self) -> None:
        """Close with 1000 (unless the connection is gone already) and wait for the socket."""
        if not self._listener.disconnected:
            if not self._transport.is_close_frame_sent:
                self._transport.send_close(_picows().WSCloseCode.OK)
            self._transport.disconnect()
            with anyio.move_on_after(5):
                await self._transport.wait_disconnected()
        if not self._listener.disconnected:
            self._transport.disconnect(graceful=False)


def _reason(exc: BaseException) -> str | None:
    """The failure reason for picows' own exceptions (``None``: the common mapping applies)."""
    pw = _picows()
    if isinstance(exc, pw.WSHandshakeError):
        response = getattr(exc, "response", None)
        status = getattr(response, "status", None)
        if status is None:
            return "protocol"
        code = int(status.value if hasattr(status, "value") else status)
        return "auth" if code in (401, 403) else "http"
    if isinstance(exc, pw.WSError):
        return "protocol"
    return None


@asynccontextmanager
async def open_picows(
    url: str,
    *,
    ssl_context: ssl.SSLContext | None,
    open_timeout: float,
    max_size: int | None,
    headers: dict[str, str] | None,
    ping_interval: float | None,
    ping_timeout: float | None,
    logger: logging.Logger,
) -> AsyncIterator[PicowsConnection]:
    """Connect over picows, yield the connection, close it on exit."""
    pw = _picows()
    listener_class = _listener_class()
    kwargs: dict[str, Any] = {
        "ssl_context": ssl_context,
        "websocket_handshake_timeout": open_timeout,
        "logger_name": logger,
        "max_frame_size": max_size if max_size is not None else 2**62,
        "extra_headers": headers,
        "enable_auto_pong": True,
    }
    if ping_interval is not None:
        kwargs["enable_auto_ping"] = True
        kwargs["auto_ping_idle_timeout"] = ping_interval
        timeout = ping_timeout if ping_timeout is not None else ping_interval
        kwargs["auto_ping_reply_timeout"] = min(timeout, ping_interval)
    try:
        with anyio.fail_after(open_timeout):
            transport, listener = await pw.ws_connect(
                lambda: listener_class(max_size), url, **kwargs
            )
    except pw.WSInvalidURL:
        raise ConnectionFailed(
            f"cannot connect to {safe_url(url)} (not a websocket server): invalid websocket URL",
            "protocol",
        ) from None
    except (OSError, TimeoutError, pw.WSError) as exc:
        reason = _reason(exc)
        if reason is None:
            raise failure(url, exc) from None
        raise ConnectionFailed(
            f"cannot connect to {safe_url(url)}: {type(exc).__name__}: {_short(exc)}", reason
        ) from None
    connection = PicowsConnection(transport, listener)
    try:
        yield connection
    finally:
        with anyio.CancelScope(shield=True):
            await connection.aclose()


def _short(exc: BaseException) -> str:
    """picows' message, first line only, never with a query string."""
    text = (str(exc) or type(exc).__name__).splitlines()[0]
    return text.split("?", 1)[0]


__all__ = ("PicowsConnection", "open_picows")
