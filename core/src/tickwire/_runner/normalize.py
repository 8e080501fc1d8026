"""The normalize stage: raw frame in, checked events out, through the core processors.

:class:`FrameHandler` calls the provider's normalizer for each frame. A frame the normalizer
cannot read (it raised :class:`~tickwire.protocols.MalformedFrame`, or failed in any other way)
or whose events carry absurd values (a price that is not positive, a negative size, NaN) is
counted, logged as ``message.malformed`` with a short excerpt, kept in the dead-letter file,
and skipped: the pipeline goes on. Control items (heartbeats, notices, acks) are handled here;
events go through the gap detector and the candle builder, then to the sinks.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal, InvalidOperation

from tickwire._log import emit
from tickwire.candles import CandleBuilder
from tickwire.deadletter import DeadLetter
from tickwire.events import EVENT_TYPES, KIND, Event, Gap, Quote, Trade
from tickwire.gaps import GapDetector
from tickwire.metrics import Metrics
from tickwire.protocols import (
    Acked,
    BatchNormalizer,
    Frame,
    Heartbeat,
    MalformedFrame,
    Normalizer,
    Notice,
    Subscribed,
)

INFO, WARNING = 20, 30
_EVENT_TYPES = frozenset(EVENT_TYPES)
_ZERO = Decimal(0)
_INF = Decimal("Infinity")
#: Characters of a bad frame shown in the log line (the whole frame is in the dead-letter file).
EXCERPT = 160
#: One frame in this many feeds the exchange-to-receive latency histogram.
LATENCY_SAMPLE = 16
#: Seconds of clock skew (either way) that earn a ``clock.skew`` warning.
SKEW_WARN = 5.0


def check_values(event: Event) -> str | None:
    """Why ``event`` carries an absurd value, or ``None`` when it looks sane."""
    try:
        if type(event) is Trade:
            assert isinstance(event, Trade)
            if not event.price > _ZERO:
                return f"trade price {event.price} is not positive"
            if not event.price.is_finite() or not event.size.is_finite():
                return f"trade price {event.price} or size {event.size} is not finite"
            if event.size < _ZERO:
                return f"trade size {event.size} is negative"
        elif type(event) is Quote:
            assert isinstance(event, Quote)
            for name in ("bid", "ask"):
                value = getattr(event, name)
                if value is not None and not value.is_finite():
                    return f"quote {name} {value} is not a number"
    except InvalidOperation:
        return "a price or size is NaN"
    return None


class FrameHandler:
    """Handles the frames of one connection (a fresh one per connection)."""

    def __init__(
        self,
        source_label: str,
        provider: str,
        normalizer: Normalizer,
        detector: GapDetector,
        builder: CandleBuilder | None,
        publish: Callable[..., Awaitable[None]],
        on_gaps: Callable[[Sequence[Gap]], None],
        deadletter: DeadLetter,
        metrics: Metrics,
        on_subscribed: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self.label = source_label
        self.provider = provider
        self.normalizer = normalizer
        self.detector = detector
        self.builder = builder
        self.publish = publish
        self.on_gaps = on_gaps
        self.deadletter = deadletter
        self.metrics = metrics
        self.on_subscribed = on_subscribed
        self._frames = 0
        self._skew_logged = -1e9
        self._latency = metrics.histogram("latency_seconds", provider=provider)
        self._counts = metrics.counters
        #: The normalizer's batch fast path, if it has one (see :meth:`handle_batch`).
        self._leading: Callable[[Sequence[Frame | Acked], int], list[Trade]] | None = (
            normalizer.leading_trades if isinstance(normalizer, BatchNormalizer) else None
        )
        self._keys: dict[type, tuple[str, tuple[tuple[str, str], ...]]] = {
            cls: ("events_total", (("kind", KIND[cls]), ("provider", provider)))
            for cls in EVENT_TYPES
        }

    async def handle(self, frame: Frame | Acked) -> None:
        """Normalize one frame and pass its events on (see :meth:`handle_batch`)."""
        await self.handle_batch((frame,))

    async def handle_batch(self, frames: Sequence[Frame | Acked]) -> None:
        """Normalize the frames that arrived together and pass their events on as one batch.

        The hot path: the normalizer runs per frame, but the value checks are inline, the
        counters are added once, and the gap detector, the candle builder and the fan-out each
        run once for the whole batch. A frame that is malformed (or whose events carry absurd
        values) is dead-lettered alone; the others go on.

        An :class:`~tickwire.protocols.Acked` frame's ``on_commit`` travels with the batch's
        events to the sinks, or is called at once when the frame leaves nothing to store.

        A normalizer may offer the batch fast path
        (:class:`~tickwire.protocols.BatchNormalizer`): the trades of the longest leading run
        of one-trade frames passing :func:`check_values`. Those frames skip the per-frame call
        and checks; the frames after the run take the per-frame path, so a malformed one is
        dead-lettered alone as before.
        """
        received = time.time_ns()
        events: list[Event] = []
        trades = 0
        leading = self._leading
        if leading is not None:
            events = leading(frames, received)  # type: ignore[assignment]
            trades = len(events)
            if trades == len(frames):
                if trades:
                    await self._pass_on(events, received, trades, trades, None, None)
                return
            if trades:
                frames = frames[trades:]
        append = events.append
        commits: list[Callable[[], None]] | None = None
        normalizer = self.normalizer
        keys = self._keys
        tally: dict[type, int] | None = None
        used = trades
        for frame in frames:
            on_commit: Callable[[], None] | None = None
            if type(frame) is Acked:
                on_commit = frame.on_commit
                frame = frame.frame
            before = len(events)
            before_trades = trades
            extra: list[type] | None = None
            try:
                for item in normalizer(frame, received):  # type: ignore[arg-type]
                    cls = type(item)
                    if cls is Trade:
                        try:
                            sane = (
                                _ZERO < item.price < _INF  # type: ignore[union-attr]
                                and _ZERO <= item.size < _INF  # type: ignore[union-attr]
                            )
                        except InvalidOperation:
                            sane = False
                        if not sane:
                            self.malformed(frame, check_values(item) or "absurd value")  # type: ignore[arg-type]
                            continue
                        append(item)  # type: ignore[arg-type]
                        trades += 1
                    elif cls in keys:
                        if cls is Quote:
                            problem = check_values(item)  # type: ignore[arg-type]
                            if problem is not None:
                                self.malformed(frame, problem)  # type: ignore[arg-type]
                                continue
                        elif cls is Gap:  # a provider that knows it missed data says so
                            self._gap_found(item)  # type: ignore[arg-type]
                        append(item)  # type: ignore[arg-type]
                        if extra is None:
                            extra = []
                        extra.append(cls)
                    elif cls is Heartbeat:
                        for gap in self.detector.heartbeat(item, received):  # type: ignore[arg-type]
                            self._gap_found(gap)
                            append(gap)
                    elif cls is Notice:
                        self.notice(item)  # type: ignore[arg-type]
                    elif cls is Subscribed and self.on_subscribed is not None:
                        self.on_subscribed(item.symbols)  # type: ignore[union-attr]
            except ProviderClosed:
                # What came before the notice still goes on; then the connection is dropped.
                del events[before:]
                if events:
                    await self._pass_on(events, received, used, before_trades, tally, commits)
                raise
            except Exception as exc:
                if isinstance(exc, MalformedFrame):
                    reason = str(exc) or "unreadable"
                else:
                    reason = f"normalizer failed: {type(exc).__name__}: {exc}"
                self.malformed(frame, reason)  # type: ignore[arg-type]
                del events[before:]  # the frame's events go with it, to the dead-letter file
                trades = before_trades
                if on_commit is not None:
                    on_commit()  # kept in the dead-letter file: handled
                continue
            if extra is not None:
                if tally is None:
                    tally = {}
                for cls in extra:
                    tally[cls] = tally.get(cls, 0) + 1
            if len(events) > before:
                used += 1
                if on_commit is not None:
                    if commits is None:
                        commits = []
                    commits.append(on_commit)
            elif on_commit is not None:
                on_commit()
        if events:
            await self._pass_on(events, received, used, trades, tally, commits)

    async def _pass_on(
        self,
        events: list[Event],
        received: int,
        used: int,
        trades: int,
        tally: dict[type, int] | None,
        commits: list[Callable[[], None]] | None,
    ) -> None:
        """Count, sample the latency, find gaps, build candles and publish one batch."""
        keys = self._keys
        counts = self._counts
        if trades:
            counts[keys[Trade]] += trades
        if tally:
            for cls, n in tally.items():
                counts[keys[cls]] += n
        seen = self._frames
        self._frames = seen + used
        samples = (seen + used) // LATENCY_SAMPLE - seen // LATENCY_SAMPLE
        if samples:
            # One frame in LATENCY_SAMPLE: as many samples as the batch crossed, spread over it.
            total = len(events)
            lag: float | None = None
            for j in range(1, samples + 1):
                ts = getattr(events[max(total * j // samples - 1, 0)], "ts", None)
                if ts is not None:
                    lag = (received - ts) / 1e9
                    self._latency.observe(max(lag, 0))
            if lag is not None:
                self._skew(lag)
        detector = self.detector
        gaps = detector.process(events)
        if self.builder is not None:
            if detector.replayed:
                again = {id(t) for t in detector.replayed}
                candles = self.builder.process(e for e in events if id(e) not in again)
            else:
                candles = self.builder.process(events)
            if candles:
                events.extend(candles)
        if gaps:
            for gap in gaps:
                self._gap_found(gap)
            events.extend(gaps)
        if commits is None:
            await self.publish(events)
        else:
            await self.publish(events, commits[0] if len(commits) == 1 else _CommitAll(commits))

    def _skew(self, lag: float) -> None:
        """``clock_skew_seconds{provider}``: receive minus exchange time of a sampled frame
        (negative: the provider's clock is ahead); a ``clock.skew`` line, at most once a minute,
        past :data:`SKEW_WARN` seconds either way."""
        self.metrics.set("clock_skew_seconds", lag, provider=self.provider)
        if abs(lag) >= SKEW_WARN:
            now = time.monotonic()
            if now - self._skew_logged >= 60:
                self._skew_logged = now
                emit(
                    WARNING,
                    "clock.skew",
                    "provider timestamps are "
                    + ("ahead of" if lag < 0 else "behind")
                    + " the local clock (or the feed is delayed)",
                    provider=self.provider,
                    source=self.label,
                    seconds=round(lag, 3),
                )

    def _gap_found(self, gap: Gap) -> None:
        self.metrics.inc("gaps_total", provider=gap.provider, reason=gap.reason)
        emit(
            WARNING,
            "gap.detected",
            provider=gap.provider,
            symbol=gap.symbol,
            kind=gap.kind,
            reason=gap.reason,
            start=gap.start,
            end=gap.end,
            seconds=round((gap.end - gap.start) / 1e9, 3),
        )
        try:
            self.on_gaps((gap,))
        except Exception as exc:  # the stream must go on whatever the backfill queue does
            emit(
                WARNING,
                "gap.deferred",
                f"{type(exc).__name__}: {exc}",
                provider=gap.provider,
                symbol=gap.symbol,
                kind=gap.kind,
            )

    def malformed(self, frame: bytes | str, reason: str) -> None:
        """Count, log and keep aside one frame that could not be used."""
        self.metrics.inc("malformed_total", provider=self.provider)
        text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
        excerpt = text[:EXCERPT] + ("…" if len(text) > EXCERPT else "")
        emit(
            WARNING,
            "message.malformed",
            reason,
            provider=self.provider,
            source=self.label,
            excerpt=excerpt,
        )
        self.deadletter.keep(self.label, self.provider, reason, frame)

    def notice(self, notice: Notice) -> None:
        """Log and count what the provider said that is not data."""
        self.metrics.inc("notices_total", provider=self.provider)
        event = "subscription.rejected" if notice.symbol else "provider.error"
        emit(
            WARNING,
            event,
            notice.message,
            provider=self.provider,
            source=self.label,
            **({"symbol": notice.symbol} if notice.symbol else {}),
            **({"code": notice.code} if notice.code else {}),
        )
        if notice.fatal:
            raise ProviderClosed(notice.message)


class ProviderClosed(Exception):
    """A provider notice asked for the connection to be dropped and reopened."""


class _CommitAll:
    """The ``on_commit`` of a batch: calls each frame's, in order."""

    __slots__ = ("calls",)

    def __init__(self, calls: list[Callable[[], None]]) -> None:
        self.calls = calls

    def __call__(self) -> None:
        for call in self.calls:
            call()


__all__ = ("FrameHandler", "ProviderClosed", "check_values")
