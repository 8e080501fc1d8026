"""TLS client contexts, built once per process and shared by every connection.

Building an :class:`ssl.SSLContext` loads the whole CA store: about 20 ms of CPU on an idle
machine, over 200 ms on a busy one, and memory that glibc rarely gives back. A backfill that made
one per REST client spent most of its time there (and grew the process by megabytes a minute in
the soak), so every HTTP client and websocket of a provider asks this module instead. A context
is safe to share between connections and tasks.
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache


@lru_cache(maxsize=16)
def _context(ca_file: str | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def client_context(ca_file: str | os.PathLike[str] | None = None) -> ssl.SSLContext:
    """The shared client context that trusts the system store, or only ``ca_file`` if given.

    The same object comes back for the same ``ca_file`` (by path), so a caller must not change
    it; one that needs other options builds its own.
    """
    return _context(os.fspath(ca_file) if ca_file is not None else None)


__all__ = ("client_context",)
