"""The ``nats`` provider's normalize stage: one bus message back into its event.

The collector already normalized the event; the writer only decodes the ``msgpack/1`` payload
(:func:`tickwire_nats.schema.decode`), exactly, ``received_ts`` included (it stays the
collector's receive time). An empty frame is the connection's idle tick and yields nothing. A
payload in an encoding this version does not read, or one that does not decode, is a
:class:`~tickwire.protocols.MalformedFrame`: the runner counts it, logs it and keeps it in the
dead-letter file, and the message is acknowledged like any handled one (it would never decode
on a redelivery either).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from tickwire.events import Event
from tickwire.protocols import Frame, Item, MalformedFrame
from tickwire_nats.connect import UNKNOWN_ENCODING
from tickwire_nats.schema import ENCODING, decode

_NOTHING: tuple[Item, ...] = ()


def normalize(frame: Frame, received_ts: int) -> Iterable[Item]:
    """Decode one message payload into its event (``received_ts`` is not used)."""
    if not frame:
        return _NOTHING
    if isinstance(frame, str):
        raise MalformedFrame("a bus message must be bytes, got text")
    if frame[0] == UNKNOWN_ENCODING:
        encoding = bytes(frame[1:]).split(b"\n", 1)[0].decode("utf-8", "replace")
        raise MalformedFrame(
            f"message encoding {encoding!r} is not one this writer reads ({ENCODING}): "
            "upgrade tickwire-nats on the writers"
        )
    try:
        event: Event = decode(frame)
    except msgspec.DecodeError as exc:
        raise MalformedFrame(f"not a {ENCODING} event: {exc}") from None
    return (event,)


__all__ = ("normalize",)
