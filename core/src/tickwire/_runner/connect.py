"""The connect stage: one task per planned connection, with the policy every provider shares.

:class:`ConnectionRunner` opens the provider's connection through its
:class:`~tickwire.protocols.Connector`, subscribes (the first time and after every reconnect),
reads frames, hands them to the normalize stage and, when anything goes wrong, logs it, waits
with exponential backoff and full jitter (0.1 s doubling to 60 s, reset after a healthy period)
and opens again. A watchdog reopens a connection that stays silent past the provider's
keep-alive window (a stall).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Sequence
from enum import StrEnum

import anyio
import websockets

from tickwire._log import emit
from tickwire._runner.normalize import FrameHandler
from tickwire._runner.subscribe import PacedConnection
from tickwire.metrics import Metrics
from tickwire.protocols import ConnectionFailed, Connector, ProviderInfo, Subscriber
from tickwire.settings import RunnerSettings, SourceSettings

INFO, WARNING, ERROR = 20, 30, 40
#: Close codes providers use for "too many requests / connections" (1013 try again later,
#: 4029/4290/4429 the private-use spellings of HTTP 429).
RATE_LIMIT_CLOSE_CODES = frozenset({1013, 4029, 4290, 4429})
#: Seconds a connection waits at least after a rate-limit close.
RATE_LIMIT_FLOOR = 5.0


class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(cap, initial * 2**attempt))``.

    The jitter spreads reconnects of many sources over time, so a provider outage does not end
    in a reconnect storm.
    """

    def __init__(self, initial: float = 0.1, cap: float = 60.0, rng: random.Random | None = None):
        self.initial = initial
        self.cap = cap
        self.attempt = 0
        self._rng = rng or random.Random()

    def ceiling(self) -> float:
        """The largest delay the next call may return."""
        return min(self.cap, self.initial * 2.0 ** min(self.attempt, 64))

    def next(self) -> float:
        """The delay before the next attempt (and count the attempt)."""
        ceiling = self.ceiling()
        self.attempt += 1
        # Uniform over [initial/2, ceiling]: clamping uniform(0, ceiling) to the floor would
        # put half of all first retries on the same instant.
        return self._rng.uniform(self.initial / 2, max(ceiling, self.initial / 2))

    def reset(self) -> None:
        """Back to the first delay (after a healthy period)."""
        self.attempt = 0


class State(StrEnum):
    """A connection's state, as health checks and the live view report it."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"


class Stalled(Exception):
    """No frame within the keep-alive window."""


class ConnectionRunner:
    """Runs one connection of one source for the life of the pipeline."""

    def __init__(
        self,
        source: SourceSettings,
        info: ProviderInfo,
        index: int,
        symbols: Sequence[str],
        connector: Connector,
        subscriber: Subscriber | None,
        make_handler: Callable[[], FrameHandler],
        on_lost: Callable[[Sequence[str]], None],
        runner: RunnerSettings,
        metrics: Metrics,
    ) -> None:
        self.source = source
        self.info = info
        self.label = f"{source.label}#{index}"
        self.symbols = tuple(symbols)
        self.connector = connector
        self.subscriber = subscriber
        self.make_handler = make_handler
        self.on_lost = on_lost
        self.settings = runner
        self.metrics = metrics
        self.state = State.CONNECTING
        self._frames_key = ("frames_total", (("connection", self.label), ("source", source.label)))
        self.last_frame = 0.0
        self.connected_since: float | None = None
        self.down_since: float | None = time.monotonic()
        self.last_error: str | None = None
        self.rate_limited = False
        self.backoff = Backoff(
            runner.backoff_initial.total_seconds(), runner.backoff_max.total_seconds()
        )

    async def run(self) -> None:
        """Connect, read, reconnect: until cancelled."""
        try:
            while True:
                reason = await self._session()
                self._lost(reason)
                delay = self.backoff.next()
                if reason == "rate_limited":
                    delay = max(delay, RATE_LIMIT_FLOOR)
                emit(
                    INFO,
                    "connection.retry",
                    source=self.label,
                    delay=round(delay, 3),
                    attempt=self.backoff.attempt,
                )
                await anyio.sleep(delay)
        finally:
            self.state = State.STOPPED

    def _lost(self, reason: str) -> None:
        if self.connected_since is not None:
            healthy = time.monotonic() - self.connected_since
            if healthy >= self.settings.healthy_after.total_seconds():
                self.backoff.reset()
            self.connected_since = None
            self.down_since = time.monotonic()
            self.on_lost(self.symbols)
        self.state = State.RECONNECTING
        self.metrics.inc("reconnects_total", source=self.source.label, reason=reason)

    async def _session(self) -> str:
        """One connection's life; returns why it ended."""
        limits = self.info.limits
        try:
            async with self.connector.open(self.symbols) as conn:
                handler = self.make_handler()
                self.last_frame = time.monotonic()
                self.connected_since = self.last_frame
                self.state = State.CONNECTED
                outage = None if self.down_since is None else self.last_frame - self.down_since
                self.down_since = None
                emit(
                    INFO,
                    "connection.restored" if self.backoff.attempt else "connection.open",
                    source=self.label,
                    symbols=len(self.symbols),
                    **({"outage_s": round(outage, 3)} if self.backoff.attempt and outage else {}),
                )
                async with anyio.create_task_group() as tg:
                    watchdog = _Watchdog(self, limits.keepalive)
                    tg.start_soon(watchdog.run, tg.cancel_scope)
                    if self.subscriber is not None:
                        paced = PacedConnection(conn, limits.messages_per_second)
                        within = limits.subscribe_within
                        with anyio.fail_after(within if within else 30):
                            await self.subscriber.subscribe(paced, self.symbols)
                    await self._read(conn, handler)
                    tg.cancel_scope.cancel()
                if watchdog.fired:
                    raise Stalled
                self.last_error = "closed by the server"
                emit(
                    WARNING,
                    "connection.lost",
                    source=self.label,
                    reason="closed",
                    detail=getattr(conn, "close_reason", None) or "",
                )
                return "closed"
        except Stalled:
            self.metrics.inc("stalls_total", source=self.source.label)
            self.last_error = f"no data for {limits.keepalive:g} s"
            emit(
                WARNING,
                "connection.lost",
                source=self.label,
                reason="stall",
                keepalive_s=limits.keepalive,
            )
            return "stall"
        except ConnectionFailed as exc:
            self.last_error = f"{exc.reason}: {exc}"
            emit(
                ERROR if self.backoff.attempt < 2 else WARNING,
                "connection.failed",
                str(exc),
                source=self.label,
                reason=exc.reason,
            )
            return exc.reason
        except TimeoutError:
            self.last_error = "subscribe timed out"
            emit(WARNING, "connection.lost", source=self.label, reason="subscribe_timeout")
            return "timeout"
        except Exception as group:
            error = _unwrap(group)
            code = _close_code(error)
            if code in RATE_LIMIT_CLOSE_CODES:
                self.last_error = f"rate limited by the server (close {code})"
                self.rate_limited = True
                emit(
                    WARNING,
                    "connection.lost",
                    str(error),
                    source=self.label,
                    reason="rate_limited",
                    code=code,
                )
                return "rate_limited"
            if self.state is not State.CONNECTED:
                self.last_error = f"{type(error).__name__}: {error}"
                emit(
                    ERROR,
                    "connection.failed",
                    str(error) or type(error).__name__,
                    source=self.label,
                    reason="error",
                    error=type(error).__name__,
                )
                return "error"
            self.last_error = f"{type(error).__name__}: {error}"
            emit(
                WARNING,
                "connection.lost",
                str(error) or type(error).__name__,
                source=self.label,
                reason="error",
                error=type(error).__name__,
            )
            return "error"

    async def _read(self, conn: object, handler: FrameHandler) -> None:
        monotonic = time.monotonic
        counts = self.metrics.counters
        key = self._frames_key
        batches = getattr(conn, "batches", None)
        if batches is not None:
            # The connection hands over the frames that arrived together: one trip through the
            # normalize stage (and one fan-out) per batch, not per frame.
            handle_batch = handler.handle_batch
            async for batch in batches():
                counts[key] += len(batch)
                self.last_frame = monotonic()
                await handle_batch(batch)
            return
        handle: Callable[[bytes | str], Awaitable[None]] = handler.handle
        async for frame in conn:  # type: ignore[attr-defined]
            counts[key] += 1
            self.last_frame = monotonic()
            await handle(frame)


def _close_code(exc: BaseException) -> int | None:
    if isinstance(exc, websockets.ConnectionClosed) and exc.rcvd is not None:
        return exc.rcvd.code
    return None


def _unwrap(exc: BaseException) -> BaseException:
    """The one real error inside task-group wrappers (the reason users need to see)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _Watchdog:
    """Cancels a connection that has been silent for longer than ``keepalive`` seconds."""

    def __init__(self, runner: ConnectionRunner, keepalive: float) -> None:
        self.runner = runner
        self.keepalive = keepalive
        self.fired = False

    async def run(self, scope: anyio.CancelScope) -> None:
        period = max(self.keepalive / 4, 0.05)
        while True:
            await anyio.sleep(period)
            if time.monotonic() - self.runner.last_frame > self.keepalive:
                self.fired = True
                scope.cancel()
                return


__all__ = ("Backoff", "ConnectionRunner", "State")
