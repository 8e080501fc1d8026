"""The connect stage: one Lightstreamer session per runner connection, bridged to the loop.

:class:`IGConnector` logs in over REST (:mod:`tickwire_ig.rest`), takes the Lightstreamer address
from the login answer and opens a :class:`LightstreamerClient` (the official SDK, TLCP 2.4 line)
as user = account id, password = ``CST-…|XST-…``. The SDK calls back on its own event thread,
shared by every client: the listeners here only copy the values out into a small JSON text and
hand it to the event loop with ``call_soon_threadsafe`` into a bounded memory stream. A full
stream drops the update (counted, and reported to the normalizer as lost updates, which become a
Gap) rather than ever blocking the SDK thread.

Health: the SDK recovers a dropped socket by itself (TLCP session recovery, nothing lost) and the
connection carries on. When the session itself is lost (recovery refused, server restarted, the
session ended), the connection ends and the runner reconnects with its backoff, logging and
metrics, and resubscribes on a fresh session; the normalizer then reports the outage as
disconnect Gaps. While the SDK says ``CONNECTED`` (its own keep-alive PROBEs are arriving) a quiet
market, a closed weekend market included, yields a heartbeat frame every ``heartbeat_every``, so
the runner's stall watchdog fires only when the SDK itself has lost the server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from lightstreamer.client import (
    ClientListener,
    LightstreamerClient,
    LoggerProvider,
    Subscription,
    SubscriptionListener,
)

from tickwire.protocols import ConnectionFailed, Frame
from tickwire_ig.rest import AuthError, IGError, IGSession, StreamLogin
from tickwire_ig.settings import IGSettings

log = logging.getLogger("tickwire_ig")

HEARTBEAT_FRAME = '["hb"]'
#: CONERR / onServerError codes: 1 bad credentials (IG: tokens refused), 65 protocol version.
CODE_BAD_CREDENTIALS = 1
CODE_PROTOCOL_VERSION = 65


# ---- the SDK's own log, into stdlib logging with the secrets taken out --------------------

_SECRET_PATTERNS = (
    re.compile(r"(LS_password=)[^&\s]*"),
    re.compile(r"CST-[^|\s&]*(\||%7C)XST-[^&\s]*", re.IGNORECASE),
)


def redact(text: str) -> str:
    """``text`` with Lightstreamer passwords and CST/XST tokens replaced by ``***``."""
    text = _SECRET_PATTERNS[0].sub(r"\1***", text)
    return _SECRET_PATTERNS[1].sub("***", text)


class _RedactingLogger:
    """One SDK log category, forwarded to ``logging.getLogger(category)`` without secrets."""

    def __init__(self, category: str) -> None:
        self._log = logging.getLogger(category)

    def _emit(self, level: int, line: str, exception: Any = None) -> None:
        if self._log.isEnabledFor(level):
            suffix = f" ({type(exception).__name__})" if exception is not None else ""
            self._log.log(level, "%s%s", redact(str(line)), suffix)

    def fatal(self, line: str, exception: Any = None) -> None:
        self._emit(logging.CRITICAL, line, exception)

    def error(self, line: str, exception: Any = None) -> None:
        self._emit(logging.ERROR, line, exception)

    def warn(self, line: str, exception: Any = None) -> None:
        self._emit(logging.WARNING, line, exception)

    def info(self, line: str, exception: Any = None) -> None:
        self._emit(logging.INFO, line, exception)

    def debug(self, line: str, exception: Any = None) -> None:
        self._emit(logging.DEBUG, line, exception)

    def trace(self, line: str, exception: Any = None) -> None:
        self._emit(5, line, exception)

    def isFatalEnabled(self) -> bool:
        return self._log.isEnabledFor(logging.CRITICAL)

    def isErrorEnabled(self) -> bool:
        return self._log.isEnabledFor(logging.ERROR)

    def isWarnEnabled(self) -> bool:
        return self._log.isEnabledFor(logging.WARNING)

    def isInfoEnabled(self) -> bool:
        return self._log.isEnabledFor(logging.INFO)

    def isDebugEnabled(self) -> bool:
        return self._log.isEnabledFor(logging.DEBUG)

    def isTraceEnabled(self) -> bool:
        return self._log.isEnabledFor(5)


class RedactingLoggerProvider(LoggerProvider):  # type: ignore[misc]
    """Routes the SDK's log categories (``lightstreamer.*``) into stdlib logging, redacted.

    The SDK logs every websocket frame at DEBUG, ``create_session`` with its ``LS_password``
    (the CST/XST tokens) included; this provider strips those before anything is logged.
    """

    def getLogger(self, category: str) -> _RedactingLogger:
        return _RedactingLogger(category)


_sdk_logging_installed = False


def install_sdk_logging() -> None:
    """Install :class:`RedactingLoggerProvider` as the SDK's (process-wide) logger provider."""
    global _sdk_logging_installed
    if not _sdk_logging_installed:
        LightstreamerClient.setLoggerProvider(RedactingLoggerProvider())
        _sdk_logging_installed = True


# ---- from the SDK thread to the event loop ------------------------------------------------


class Bridge:
    """Hands SDK callbacks to the event loop: never blocks the SDK thread.

    ``post`` is called on the SDK thread; ``_put`` runs on the loop, puts into a bounded
    memory stream and, when it is full, drops the update and remembers the item so that a
    ``lost`` frame precedes its next update (the normalizer turns that into a Gap).
    """

    def __init__(self, size: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.send: MemoryObjectSendStream[tuple[Any, ...]]
        self.recv: MemoryObjectReceiveStream[tuple[Any, ...]]
        self.send, self.recv = anyio.create_memory_object_stream[tuple[Any, ...]](size)
        self.closed = False
        self.dropped = 0
        self._overflowed: dict[str, int] = {}
        self.status = "DISCONNECTED"

    def post(self, *message: Any) -> None:
        """Queue one message (called on the SDK thread)."""
        if self.closed:
            return
        try:
            self.loop.call_soon_threadsafe(self._put, message)
        except RuntimeError:  # the loop is closed: nobody listens any more
            self.closed = True

    def _put(self, message: tuple[Any, ...]) -> None:
        if self.closed:
            return
        item = message[2] if message[0] == "data" and len(message) > 2 else None
        try:
            if item is not None and item in self._overflowed:
                lost = self._overflowed[item]
                self.send.send_nowait(("data", json.dumps(["lost", item, lost]), None))
                del self._overflowed[item]
            self.send.send_nowait(message)
        except anyio.WouldBlock:
            self.dropped += 1
            if item is not None:
                self._overflowed[item] = self._overflowed.get(item, 0) + 1
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.closed = True

    def close(self) -> None:
        """Stop accepting messages and release the stream."""
        self.closed = True
        self.send.close()
        self.recv.close()


class _ClientListener(ClientListener):  # type: ignore[misc]
    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    def onStatusChange(self, status: str) -> None:
        self.bridge.post("status", str(status))

    def onServerError(self, code: int, message: str) -> None:
        self.bridge.post("error", int(code), str(message))


class _SubscriptionListener(SubscriptionListener):  # type: ignore[misc]
    """Copies each update out as text; runs on the SDK's event thread."""

    def __init__(self, bridge: Bridge, key: str, symbols: Sequence[str]) -> None:
        self.bridge = bridge
        self.key = key
        self.symbols = list(symbols)

    def onItemUpdate(self, update: Any) -> None:
        name = update.getItemName()
        text = json.dumps(["u", name, bool(update.isSnapshot()), update.getFields()])
        self.bridge.post("data", text, name)

    def onSubscription(self) -> None:
        self.bridge.post("data", json.dumps(["sub", self.key, self.symbols]), None)

    def onSubscriptionError(self, code: int, message: str) -> None:
        self.bridge.post(
            "data", json.dumps(["suberr", self.key, int(code), str(message), self.symbols]), None
        )

    def onUnsubscription(self) -> None:
        self.bridge.post("unsub", self.key)

    def onItemLostUpdates(self, itemName: str, itemPos: int, lostUpdates: int) -> None:
        self.bridge.post("data", json.dumps(["lost", itemName, int(lostUpdates)]), None)


# ---- the connection the runner reads --------------------------------------------------------


class IGConnection:
    """A :class:`~tickwire.protocols.Connection` over one Lightstreamer session.

    ``send`` takes the subscribe messages the subscriber writes (JSON: mode, items, fields,
    adapter, snapshot) and turns each into an SDK :class:`Subscription`. Iterating yields the
    data frames for the normalizer and ends when the session is lost.
    """

    def __init__(
        self,
        settings: IGSettings,
        session: IGSession,
        client: LightstreamerClient,
        bridge: Bridge,
        login: StreamLogin,
    ) -> None:
        self.settings = settings
        self.session = session
        self.client = client
        self.bridge = bridge
        self.login = login
        self.subscriptions: list[Subscription] = []
        self.close_reason: str | None = None

    @property
    def account_id(self) -> str:
        """The account the session streams for (the ``PRICE:<account>:<epic>`` part)."""
        return self.login.account_id

    async def send(self, message: Frame) -> None:
        """Subscribe one item group, as described by ``message`` (see the subscriber)."""
        spec = json.loads(message)
        if spec.get("op") != "subscribe":
            raise ValueError(f"unknown IG connection message {spec.get('op')!r}")
        sub = Subscription(spec["mode"], list(spec["items"]), list(spec["fields"]))
        if spec.get("adapter"):
            sub.setDataAdapter(spec["adapter"])
        sub.setRequestedSnapshot(spec.get("snapshot", "yes"))
        sub.addListener(_SubscriptionListener(self.bridge, spec["key"], spec["symbols"]))
        self.client.subscribe(sub)
        self.subscriptions.append(sub)

    async def __aiter__(self) -> AsyncIterator[Frame]:
        """Yield frames until the Lightstreamer session is lost."""
        every = self.settings.heartbeat_every.total_seconds()
        recv = self.bridge.recv
        next_beat = time.monotonic() + every
        while True:
            message: tuple[Any, ...] | None = None
            with anyio.move_on_after(max(0.0, next_beat - time.monotonic())):
                try:
                    message = await recv.receive()
                except (anyio.EndOfStream, anyio.ClosedResourceError):
                    return
            now = time.monotonic()
            if now >= next_beat:
                next_beat = now + every
                if message is None and self.bridge.status.startswith("CONNECTED"):
                    yield HEARTBEAT_FRAME
                await self._refresh_if_due()
            if message is None:
                continue
            kind = message[0]
            if kind == "data":
                yield message[1]
            elif kind == "status":
                if self._on_status(message[1]):
                    await _raise_pending_error(self.bridge, self.session)
                    return
            elif kind == "error":
                self._on_error(message[1], message[2])
            # "unsub": the SDK dropped its subscriptions with the session; the status says why.

    def _on_status(self, status: str) -> bool:
        """Note a status change; True when the session is gone."""
        previous, self.bridge.status = self.bridge.status, status
        log.info("ig.status %s -> %s", previous, status)
        if status == "DISCONNECTED:WILL-RETRY" or status == "DISCONNECTED":
            self.close_reason = f"Lightstreamer session lost ({previous} -> {status})"
            return True
        return False

    def _on_error(self, code: int, message: str) -> None:
        raise server_error(code, message, self.session)

    async def _refresh_if_due(self) -> None:
        """Keep the tokens fresh so the next session is created with a valid password."""
        if not self.session.stale:
            return
        try:
            login = await self.session.stream_login()
        except IGError as exc:
            log.warning("ig.token_refresh_failed %s", exc)
            return
        self.login = login
        self.client.connectionDetails.setPassword(login.password)
        log.info("ig.token_refreshed account=%s", login.account_id)


async def _raise_pending_error(bridge: Bridge, session: IGSession, wait: float = 0.5) -> None:
    """The SDK reports ``DISCONNECTED`` before the server error that caused it: raise that
    error if it follows within ``wait`` seconds."""
    with anyio.move_on_after(wait):
        while True:
            try:
                message = await bridge.recv.receive()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                return
            if message[0] == "error":
                raise server_error(message[1], message[2], session)
            if message[0] == "status" and message[1].startswith("CONNECTING"):
                return


def server_error(code: int, message: str, session: IGSession) -> ConnectionFailed:
    """The :class:`ConnectionFailed` for a Lightstreamer ``onServerError`` (CONERR)."""
    if code == CODE_PROTOCOL_VERSION:
        return ConnectionFailed(
            f"the Lightstreamer server refused the client's protocol version (code 65: "
            f"{message}); IG's servers speak TLCP 2.4: install lightstreamer-client-lib<2",
            "protocol",
        )
    if code == CODE_BAD_CREDENTIALS or code <= 0:
        # IG refuses stale tokens this way (e.g. after its weekend maintenance): log in again.
        session.invalidate()
        return ConnectionFailed(
            f"the Lightstreamer server refused the session tokens (code {code}: {message}); "
            "logging in again on the next attempt",
            "auth",
        )
    return ConnectionFailed(f"Lightstreamer server error {code}: {message}", "protocol")


class IGConnector:
    """Opens one Lightstreamer session per runner connection, logging in as needed."""

    def __init__(self, settings: IGSettings, session: IGSession | None = None) -> None:
        self.settings = settings
        self.session = session or IGSession(settings)
        self.configure: Callable[[LightstreamerClient], None] | None = None
        install_sdk_logging()

    def _client(self, login: StreamLogin, bridge: Bridge) -> LightstreamerClient:
        s = self.settings
        client = LightstreamerClient(login.endpoint, None)  # None: IG's DEFAULT adapter set
        client.connectionDetails.setUser(login.account_id)
        client.connectionDetails.setPassword(login.password)
        options = client.connectionOptions
        options.setForcedTransport("WS-STREAMING")
        options.setKeepaliveInterval(int(s.keepalive.total_seconds() * 1000))
        options.setStalledTimeout(int(s.stalled_timeout.total_seconds() * 1000))
        options.setReconnectTimeout(int(s.reconnect_timeout.total_seconds() * 1000))
        client.addListener(_ClientListener(bridge))
        if self.configure is not None:
            self.configure(client)
        return client

    @asynccontextmanager
    async def open(self, symbols: Sequence[str]) -> AsyncIterator[IGConnection]:
        """Log in if needed, connect the SDK, wait for ``CONNECTED``, yield the connection."""
        try:
            login = await self.session.stream_login()
        except AuthError as exc:
            raise ConnectionFailed(str(exc), "auth") from None
        except IGError as exc:
            raise ConnectionFailed(str(exc), "http") from None
        bridge = Bridge(self.settings.queue)
        client = self._client(login, bridge)
        conn = IGConnection(self.settings, self.session, client, bridge, login)
        client.connect()
        try:
            await self._connected(bridge)
            yield conn
        finally:
            bridge.closed = True
            client.disconnect()
            for sub in conn.subscriptions:
                for listener in sub.getListeners():
                    sub.removeListener(listener)
            for listener in client.getListeners():
                client.removeListener(listener)
            bridge.close()

    async def _connected(self, bridge: Bridge) -> None:
        timeout = self.settings.connect_timeout.total_seconds()
        with anyio.move_on_after(timeout):
            while True:
                message = await bridge.recv.receive()
                if message[0] == "error":
                    raise server_error(message[1], message[2], self.session)
                if message[0] != "status":
                    continue
                status = message[1]
                bridge.status = status
                log.info("ig.status %s", status)
                if status.startswith("CONNECTED:") and status != "CONNECTED:STREAM-SENSING":
                    return
                if status in ("DISCONNECTED:WILL-RETRY", "DISCONNECTED"):
                    await _raise_pending_error(bridge, self.session)
                    raise ConnectionFailed(
                        "the Lightstreamer server could not be reached", "refused"
                    )
        raise ConnectionFailed(f"no Lightstreamer session within {timeout:g} s", "timeout")


__all__ = (
    "Bridge",
    "IGConnection",
    "IGConnector",
    "RedactingLoggerProvider",
    "install_sdk_logging",
    "redact",
    "server_error",
)
