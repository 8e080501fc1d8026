"""Acknowledge after commit: when may a writer ack a JetStream message?

Only once every sink of the writer's pipeline has durably written every event the message
produced. Until then a crash must leave the message unacknowledged, so JetStream delivers it
again (to this writer after a restart, or to another writer of the same durable consumer).

Two ways to learn when the sinks wrote a frame's events:

1. **Core support** (tickwire core has it): a connection yields
   ``tickwire.protocols.Acked(frame, on_commit)`` and the runner calls ``on_commit()`` once every
   sink wrote the frame's events. The ``nats`` provider uses it when core has it.
2. **On an older core** without ``Acked``, :class:`CommitTracker`, bound with :func:`attach`:
   every running sink is a FIFO (its buffer is a queue of chunks; batches are taken from the
   head, whole chunks only, and a batch is retried until written before the next is taken), so
   the sink's ``written`` counter is a watermark. The tracker counts the events each sink
   *accepted*; when a message's frame has been handled (the runner asks the connection for the
   next frame only after its events are queued in every sink), the connection notes the accepted
   counts as the message's mark, and acks it once each sink's ``written`` reached its mark.
   Events other sources queued in between only move the mark on; nothing is acked early. This
   leans on the runner's internals (``Pipeline.running_sinks``, ``RunningSink.offer`` and
   ``written``), which is why it is opt-in through :func:`attach` (the ``tickwire-nats-writer``
   command does it) and why the core hook is the lasting fix.

Counting only ``written`` (without the accepted count) would not be sound: while a batch is
being written it is in neither ``queued`` nor ``written``, so no mark read from those two
counters is both safe and reachable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from tickwire.events import Event
from tickwire.settings import ConfigError

if TYPE_CHECKING:
    from tickwire.pipeline import Pipeline


class _RunningSink(Protocol):
    written: int
    queued: int

    def offer(self, events: Sequence[Event]) -> bool: ...


class CommitTracker:
    """Watermarks over a pipeline's running sinks: what they accepted and what they wrote.

    A sink with a spill file that a previous run left behind replays those events first,
    before anything accepted in this run; they count as accepted at the start, so ``written``
    and the accepted count stay aligned. Build the tracker before the pipeline starts.
    """

    def __init__(self, sinks: Sequence[_RunningSink]) -> None:
        self._sinks = tuple(sinks)
        for rs in self._sinks:
            if rs.written or rs.queued:
                raise RuntimeError("attach() the commit tracker before the pipeline starts")
        # Events recovered from a spill file are written before anything accepted now.
        self._accepted = [int(getattr(rs, "spilled", 0) or 0) for rs in self._sinks]
        for index, rs in enumerate(self._sinks):
            self._count(index, rs)

    def _count(self, index: int, rs: _RunningSink) -> None:
        offer: Callable[..., bool] = rs.offer
        accepted = self._accepted

        def counting_offer(events: Sequence[Event], *args: Any, **kwargs: Any) -> bool:
            if offer(events, *args, **kwargs):
                accepted[index] += len(events)
                return True
            return False

        rs.offer = counting_offer  # type: ignore[method-assign]

    def mark(self) -> tuple[int, ...]:
        """How many events each sink has accepted so far."""
        return tuple(self._accepted)

    def committed(self, mark: Sequence[int]) -> bool:
        """True once every sink wrote at least ``mark`` events (so all accepted before it)."""
        return all(rs.written >= m for rs, m in zip(self._sinks, mark, strict=True))


def attach(pipeline: Pipeline) -> CommitTracker:
    """Let the ``nats`` sources of ``pipeline`` acknowledge after the sinks committed.

    Call it after building the pipeline and before entering it. Refuses a pipeline that builds
    candles: a writer stores the candles the collectors built and must not build its own.
    """
    from tickwire_nats.connect import NatsConnector

    existing: Any = getattr(pipeline, "_tickwire_nats_tracker", None)
    if isinstance(existing, CommitTracker):
        return existing
    connectors = [c.connector for c in pipeline.connections]
    if any(isinstance(c, NatsConnector) for c in connectors) and pipeline.builder is not None:
        raise ConfigError(
            "a pipeline with a nats source is a writer: it stores the candles the collectors "
            "built and must not build its own; set [candles] intervals = []"
        )
    from tickwire_nats.connect import CORE_ACKED

    # With core's Acked frames the runner reports commits itself: nothing to watch.
    tracker = CommitTracker(() if CORE_ACKED is not None else pipeline.running_sinks)
    for connector in connectors:
        if isinstance(connector, NatsConnector):
            connector.tracker = tracker
    pipeline.__dict__["_tickwire_nats_tracker"] = tracker
    return tracker


__all__ = ("CommitTracker", "attach")
