"""The ``nats`` sink: a collector publishes every event to JetStream.

One message per event, on ``<prefix>.<kind>.<provider>.<symbol>``, with a deterministic
``Nats-Msg-Id`` (:func:`tickwire_nats.schema.message_id`) and the encoding header. A batch is
published with async acks (all messages go out, then the acks are awaited together); if any
ack fails or does not come within ``ack_timeout``, :meth:`NatsSink.write_batch` raises and the
runner retries the whole batch. The retry is harmless: the messages that did land carry the same
ids, and JetStream drops them as duplicates within the duplicate window (the stores' unique keys
are the guard beyond it). The same ids make two collectors of one shard a redundant pair: the
stream keeps one copy of each event.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence

import anyio
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from tickwire.events import Event
from tickwire_nats.schema import (
    ENCODING,
    ENCODING_HEADER,
    MSG_ID_HEADER,
    encode,
    message_id,
    subject_for,
)
from tickwire_nats.settings import NatsSinkSettings
from tickwire_nats.stream import connect, ensure_stream

#: Publishes whose acks are awaited together.
ACK_WINDOW = 1000


class PublishFailed(Exception):
    """JetStream did not acknowledge every message of a batch (the runner retries it)."""


class NatsSink:
    """Publishes events to a JetStream stream."""

    def __init__(self, settings: NatsSinkSettings) -> None:
        self.settings = settings
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        #: Messages JetStream stored (not counting the duplicates it dropped).
        self.stored = 0
        #: Messages JetStream recognised as duplicates and dropped.
        self.duplicates = 0

    async def open(self) -> None:
        """Connect, then create or check the stream."""
        nc = await connect(self.settings, f"tickwire-collector-{os.getpid()}")
        try:
            js = nc.jetstream(publish_async_max_pending=self.settings.max_pending)
            await ensure_stream(js, self.settings)
        except BaseException:
            await nc.close()
            raise
        self._nc, self._js = nc, js

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Publish ``events`` and wait until JetStream acknowledged every one."""
        js = self._js
        if js is None:
            raise RuntimeError("NatsSink.write_batch called before open()")
        prefix = self.settings.subject_prefix
        stream = self.settings.stream
        timeout = self.settings.ack_timeout.total_seconds()
        futures: list[asyncio.Future[PubAck]] = []
        try:
            # One deadline for the whole batch (publishing waits for room among the
            # ``max_pending`` unacknowledged messages, then the acks). ``wait_stall`` is left
            # unset: nats-py wraps every publish in ``asyncio.wait_for`` with it, a task per
            # message, which cost two thirds of the throughput here.
            with anyio.fail_after(timeout):
                # Acks are awaited a window at a time (the previous window while the next is
                # being published): fewer in flight than max_pending, so publishing never
                # stalls on nats-py's semaphore, and the acks overlap the publishing.
                window = min(ACK_WINDOW, self.settings.max_pending)
                previous: list[asyncio.Future[PubAck]] = []
                for start in range(0, len(events), window):
                    current = []
                    for event in events[start : start + window]:
                        headers = {MSG_ID_HEADER: message_id(event), ENCODING_HEADER: ENCODING}
                        current.append(
                            await js.publish_async(
                                subject_for(prefix, event),
                                encode(event),
                                stream=stream,
                                headers=headers,
                            )
                        )
                    futures.extend(current)
                    if previous:
                        await asyncio.wait(previous)
                    previous = current
                if previous:
                    await asyncio.wait(previous)
        except TimeoutError:
            for future in futures:
                future.cancel()
            unacked = len(events) - sum(1 for f in futures if f.done() and not f.cancelled())
            raise PublishFailed(
                f"{unacked} of {len(events)} messages not acknowledged by JetStream within "
                f"{timeout:g} s"
            ) from None
        except BaseException:
            for future in futures:
                future.cancel()
            raise
        failed = 0
        first: BaseException | None = None
        for future in futures:
            if future.cancelled():
                continue
            exc = future.exception()
            if exc is not None:
                failed += 1
                first = first or exc
                continue
            if future.result().duplicate:
                self.duplicates += 1
            else:
                self.stored += 1
        if first is not None:
            raise PublishFailed(f"{failed} of {len(futures)} publishes failed: {first!r}")

    async def aclose(self) -> None:
        """Drain and close the connection."""
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None and not nc.is_closed:
            await nc.close()


__all__ = ("NatsSink", "PublishFailed")
