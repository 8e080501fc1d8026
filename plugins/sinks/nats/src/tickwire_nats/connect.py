"""The ``nats`` provider's connect stage: a durable pull consumer, fetched in batches.

Each subject filter of a ``[[sources]] provider = "nats"`` entry is one connection with its own
durable consumer (explicit acks). The connection fetches ``batch`` messages at a time and yields
each message's payload as a frame; the normalizer (:mod:`tickwire_nats.normalize`) decodes it.
A message is acknowledged only after the pipeline's sinks wrote its events (see
:mod:`tickwire_nats.ack`), so a writer that dies loses nothing: JetStream delivers the
unacknowledged messages again after ``ack_wait`` (to this writer after a restart, or to another
writer sharing the durable consumer). Messages still waiting for their commit when the connection
closes are nak'ed, so they are delivered again at once rather than after ``ack_wait``; the sinks'
unique keys make the second write harmless.

Joining an existing durable consumer makes no ``CONSUMER.INFO`` or ``CONSUMER.CREATE`` request
for it: on nats-server 2.9.10 either request leaves a pull consumer that has a backlog delivering
a few hundred messages per second for the rest of its life (measured: 8-15k msgs/s before one
``consumer_info`` call, 250-550 after, the server idle). nats-py's ``pull_subscribe`` asks
``CONSUMER.INFO`` first, so every writer that joined (a second writer, a restart, a reconnect)
slowed all writers of that durable. The connection lists the stream's consumer *names*
(``CONSUMER.NAMES``, which does not touch the consumer), binds to an existing durable, and
creates only a missing one. Monitoring that polls ``nats consumer info`` does the same harm on
that server version; see the README (*Limits*).

On an idle stream each empty fetch yields an empty frame, which keeps the runner's stall
watchdog content while the server answers; while the NATS connection is down nothing is
yielded, so the watchdog reopens the connection after the keep-alive window.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import anyio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

import tickwire.protocols
from tickwire.protocols import ConnectionFailed, Frame, ProviderInfo
from tickwire_nats.ack import CommitTracker
from tickwire_nats.schema import ENCODING, ENCODING_HEADER
from tickwire_nats.settings import NatsSourceSettings
from tickwire_nats.stream import connect, ensure_stream

#: Core's "ack after commit" frame wrapper, when this core has it (see tickwire_nats.ack).
CORE_ACKED: Any = getattr(tickwire.protocols, "Acked", None)
#: A frame starting with this byte (never valid MessagePack) carries an unknown encoding.
UNKNOWN_ENCODING = 0xC1
#: Seconds between looks at the sinks' watermarks.
ACK_POLL = 0.01

NEEDS_ATTACH = (
    "the nats provider acknowledges a message only after the sinks wrote it, which this "
    "tickwire core cannot report by itself: run writers with 'tickwire-nats-writer -c FILE', "
    "or call tickwire_nats.attach(pipeline) before starting an embedded pipeline"
)


async def consumer_names(nc: Client, stream: str) -> set[str]:
    """The names of ``stream``'s consumers, from ``$JS.API.CONSUMER.NAMES`` (paged).

    Unlike ``CONSUMER.INFO`` this does not touch any consumer's state (see the module doc).
    """
    names: set[str] = set()
    while True:
        request = json.dumps({"offset": len(names)}).encode()
        reply = await nc.request(f"$JS.API.CONSUMER.NAMES.{stream}", request, timeout=5)
        body = json.loads(reply.data)
        if "error" in body:
            detail = f"listing the consumers of {stream}: {body['error']}"
            raise ConnectionFailed(detail, "protocol")
        page = body.get("consumers") or []
        names.update(page)
        if not page or len(names) >= int(body.get("total", 0)):
            return names


async def bind_consumer(
    nc: Client, js: JetStreamContext, stream: str, config: ConsumerConfig
) -> JetStreamContext.PullSubscription:
    """Bind to the durable ``config.durable_name``, creating it only when it is missing.

    Never asks ``CONSUMER.INFO`` and never re-creates an existing consumer (see the module doc).
    An existing consumer keeps its configuration (as with nats-py's ``pull_subscribe``).
    """
    durable = config.durable_name
    assert durable is not None
    if durable not in await consumer_names(nc, stream):
        # Two writers starting at the same instant may both get here; the second create is
        # then a CREATE of an existing consumer (harmless for the data, see the README).
        await js.add_consumer(stream, config=config)
    return await js.pull_subscribe_bind(durable=durable, stream=stream)


def consumer_name(settings: NatsSourceSettings, subject_filter: str) -> str:
    """The durable consumer of one filter: ``durable``, or ``durable-<hash>`` for several."""
    if len(settings.symbols) == 1:
        return settings.durable
    digest = hashlib.blake2b(subject_filter.encode(), digest_size=4).hexdigest()
    return f"{settings.durable}-{digest}"


class NatsConnection:
    """One durable pull consumer: yields message payloads, acks them after the commit."""

    def __init__(
        self,
        nc: Client,
        sub: JetStreamContext.PullSubscription,
        settings: NatsSourceSettings,
        tracker: CommitTracker | None,
    ) -> None:
        self._nc = nc
        self._sub = sub
        self._settings = settings
        self._tracker = tracker
        #: (mark, message) of handled messages waiting for their commit, oldest first.
        self._marked: deque[tuple[tuple[int, ...], Msg]] = deque()
        #: messages core reported committed (the core ``Acked`` path).
        self._ready: deque[Msg] = deque()
        #: every delivered message not yet acknowledged (for in-progress and nak at close).
        self._unacked: dict[int, Msg] = {}
        #: Messages acknowledged over this connection's life.
        self.acked = 0

    async def send(self, message: Frame) -> None:
        """Nothing to send: the consumer exists once the connection is open."""

    async def __aiter__(self) -> AsyncIterator[Frame]:
        sub, nc = self._sub, self._nc
        batch = self._settings.batch
        timeout = self._settings.fetch_timeout.total_seconds()
        tracker = self._tracker
        while True:
            try:
                msgs = await sub.fetch(batch, timeout=timeout)
            except TimeoutError:
                # An idle stream. Not only nats.errors.TimeoutError: nats-py 2.16 also raises
                # a bare asyncio.TimeoutError (the builtin one) when the deadline ran out
                # between its no-wait probe and the lingering pull (one empty fetch in 7 at a
                # 50 ms timeout here; under load at 1 s too). Either is "no messages yet".
                if nc.is_connected:
                    yield b""
                continue
            for msg in msgs:
                self._unacked[id(msg)] = msg
                frame = _frame(msg)
                if CORE_ACKED is not None:
                    yield CORE_ACKED(frame, _on_commit(self._ready, msg))
                    continue
                yield frame
                # The runner asks for the next frame only after this one's events were queued
                # in every sink: their positions are now known.
                assert tracker is not None
                self._marked.append((tracker.mark(), msg))

    async def ack_committed(self) -> None:
        """Acknowledge, oldest first, every message whose events every sink has written."""
        tracker, marked, ready = self._tracker, self._marked, self._ready
        while ready:
            await self._ack(ready.popleft())
        if tracker is None:
            return
        while marked and tracker.committed(marked[0][0]):
            await self._ack(marked.popleft()[1])

    async def _ack(self, msg: Msg) -> None:
        self._unacked.pop(id(msg), None)
        await msg.ack()
        self.acked += 1

    async def run_acks(self) -> None:
        """Ack committed messages as they commit; keep the slow ones from being redelivered."""
        in_progress_every = max(self._settings.ack_wait.total_seconds() / 3, ACK_POLL)
        last = anyio.current_time()
        while True:
            await anyio.sleep(ACK_POLL)
            await self.ack_committed()
            now = anyio.current_time()
            if now - last >= in_progress_every and self._unacked:
                last = now
                for msg in tuple(self._unacked.values()):
                    await msg.in_progress()

    async def release(self) -> None:
        """At close: ack what committed, nak the rest so it is delivered again at once."""
        await self.ack_committed()
        for msg in tuple(self._unacked.values()):
            await msg.nak()
        self._unacked.clear()


def _on_commit(ready: deque[Msg], msg: Msg) -> Callable[[], None]:
    return lambda: ready.append(msg)


def _frame(msg: Msg) -> bytes:
    headers = msg.headers
    encoding = headers.get(ENCODING_HEADER) if headers else None
    if encoding == ENCODING:
        return msg.data
    return bytes([UNKNOWN_ENCODING]) + str(encoding).encode() + b"\n" + msg.data


class NatsConnector:
    """Opens one durable pull consumer per subject filter (``symbols``)."""

    def __init__(self, settings: NatsSourceSettings, info: ProviderInfo) -> None:
        self.settings = settings
        self.info = info
        #: Set by :func:`tickwire_nats.attach` (needed until core reports commits itself).
        self.tracker: CommitTracker | None = None

    def open(self, symbols: Sequence[str]) -> AbstractAsyncContextManager[NatsConnection]:
        """Connect and bind the durable consumer of ``symbols[0]`` (one filter each)."""
        return self._open(symbols)

    @asynccontextmanager
    async def _open(self, symbols: Sequence[str]) -> AsyncIterator[NatsConnection]:
        if CORE_ACKED is None and self.tracker is None:
            raise ConnectionFailed(NEEDS_ATTACH, "protocol")
        settings = self.settings
        (subject_filter,) = symbols
        nc = await connect(settings, f"tickwire-writer-{os.getpid()}")
        try:
            js = nc.jetstream()
            await ensure_stream(js, settings)
            subject = f"{settings.subject_prefix}.{subject_filter}"
            durable = consumer_name(settings, subject_filter)
            config = ConsumerConfig(
                durable_name=durable,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=settings.ack_wait.total_seconds(),
                max_ack_pending=settings.max_ack_pending,
                max_deliver=settings.max_deliver,
                filter_subject=subject,
                max_waiting=512,
            )
            sub = await bind_consumer(nc, js, settings.stream, config)
            conn = NatsConnection(nc, sub, settings, self.tracker)
            async with anyio.create_task_group() as tg:
                tg.start_soon(conn.run_acks)
                try:
                    yield conn
                finally:
                    tg.cancel_scope.cancel()
                    with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                        await conn.release()
                        await nc.flush(timeout=2)
        finally:
            # close, not drain: draining a pull subscription waits on a queue nats-py never
            # marks done. What matters (acks and naks) was flushed by release().
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await nc.close()


__all__ = ("NatsConnection", "NatsConnector", "bind_consumer", "consumer_name", "consumer_names")
