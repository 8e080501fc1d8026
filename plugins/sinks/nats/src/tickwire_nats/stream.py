"""Connecting to NATS and managing the JetStream stream both sides use.

Defaults (all settings, see the README): stream ``TICKWIRE`` on subjects ``tickwire.>``, file
storage, limits retention (messages stay until ``max_age`` = 3 days or ``max_bytes``; the oldest
go first), 1 replica (3 in a cluster of 3), a 2-minute duplicate window (JetStream's default;
the NATS docs advise against large windows, they cost server memory per message id).

When the stream exists it is checked, not changed: a stream whose subjects do not cover
``<prefix>.>`` or that has no duplicate window is refused (events would be lost or duplicated);
other differences (max age, replicas …) are logged as ``nats.stream_differs`` and left to the
operator, who may have tuned them on purpose.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig, StreamInfo
from nats.js.errors import NotFoundError

from tickwire.protocols import ConnectionFailed
from tickwire_nats.settings import _Bus

log = logging.getLogger("tickwire.nats")

#: Seconds one connection attempt to a server may take.
CONNECT_TIMEOUT = 3.0


class StreamMismatch(Exception):
    """The existing stream cannot carry tickwire's events as configured."""


async def connect(settings: _Bus, name: str) -> Client:
    """Open a NATS connection with the settings' servers and credentials.

    Raises :class:`~tickwire.protocols.ConnectionFailed` when no server answers.
    """
    options: dict[str, Any] = {
        "servers": [s.strip() for s in settings.url.split(",") if s.strip()],
        "name": name,
        "connect_timeout": CONNECT_TIMEOUT,
        "allow_reconnect": True,
        "max_reconnect_attempts": -1,
        "reconnect_time_wait": 1,
    }
    if settings.user is not None:
        options["user"] = settings.user
    if settings.password is not None:
        options["password"] = settings.password.get_secret_value()
    if settings.token is not None:
        options["token"] = settings.token.get_secret_value()
    if settings.creds is not None:
        options["user_credentials"] = settings.creds

    async def _quiet(exc: Exception) -> None:
        log.debug("nats client: %s", exc)

    options["error_cb"] = _quiet
    nc = Client()
    try:
        # nats-py keeps trying a first connect forever when reconnects are unlimited; bound
        # the first one (the runner retries with its backoff), keep later reconnects unlimited.
        with anyio.fail_after(CONNECT_TIMEOUT * 2):
            await nc.connect(**options)
    except Exception as exc:  # nats-py raises NoServersError, OSError, TimeoutError …
        with anyio.CancelScope(shield=True):
            await nc.close()
        reason = "auth" if "authorization" in str(exc).lower() else "refused"
        detail = str(exc) or type(exc).__name__
        raise ConnectionFailed(f"NATS at {settings.url}: {detail}", reason) from None
    return nc


def stream_config(settings: _Bus) -> StreamConfig:
    """The stream configuration the settings ask for."""
    return StreamConfig(
        name=settings.stream,
        subjects=[f"{settings.subject_prefix}.>"],
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=settings.max_age.total_seconds(),
        max_bytes=settings.max_bytes,
        storage=StorageType.FILE if settings.storage == "file" else StorageType.MEMORY,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window.total_seconds(),
    )


def _covers(subjects: list[str], prefix: str) -> bool:
    wanted = f"{prefix}.>"
    if wanted in subjects or ">" in subjects:
        return True
    head = prefix.split(".")
    for subject in subjects:
        tokens = subject.split(".")
        if tokens[-1] != ">" or len(tokens) - 1 > len(head):
            continue
        if all(t in ("*", h) for t, h in zip(tokens[:-1], head, strict=False)):
            return True
    return False


async def ensure_stream(js: JetStreamContext, settings: _Bus) -> StreamInfo:
    """Create the stream if it is missing; check it if it is there. Returns its info."""
    wanted = stream_config(settings)
    try:
        info = await js.stream_info(settings.stream)
    except NotFoundError:
        if not settings.manage_stream:
            raise StreamMismatch(
                f"JetStream stream {settings.stream!r} does not exist and manage_stream is "
                "off: create it, or set manage_stream = true"
            ) from None
        info = await js.add_stream(wanted)
        log.info(
            "nats.stream_created %s subjects=%s",
            settings.stream,
            wanted.subjects,
            extra={"event": "nats.stream_created", "fields": {"stream": settings.stream}},
        )
        return info
    have = info.config
    if not _covers(list(have.subjects or []), settings.subject_prefix):
        raise StreamMismatch(
            f"JetStream stream {settings.stream!r} has subjects {have.subjects}, which do not "
            f"cover {settings.subject_prefix}.>: set subject_prefix or stream to match"
        )
    if not have.duplicate_window:
        raise StreamMismatch(
            f"JetStream stream {settings.stream!r} has no duplicate window: redundant "
            "collectors would store every event twice"
        )
    differs = {
        key: (getattr(have, key), getattr(wanted, key))
        for key in ("max_age", "max_bytes", "num_replicas", "duplicate_window", "storage")
        if getattr(have, key) != getattr(wanted, key)
    }
    if differs:
        log.warning(
            "nats.stream_differs %s %s",
            settings.stream,
            ", ".join(f"{k}: has {h!r}, settings say {w!r}" for k, (h, w) in differs.items()),
            extra={"event": "nats.stream_differs", "fields": {"stream": settings.stream}},
        )
    return info


__all__ = ("StreamMismatch", "connect", "ensure_stream", "stream_config")
