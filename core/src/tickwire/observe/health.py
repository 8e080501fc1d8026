"""Health and readiness of a running pipeline, as ``/healthz`` and ``/readyz`` report them.

**Healthy** (``/healthz`` 200) means every connection is *connected, or reconnecting within
policy*, and every sink is writable:

* a connection in state ``connected`` is healthy;
* a connection in state ``connecting`` or ``reconnecting`` is healthy while it has been down
  for less than :attr:`HealthPolicy.down_grace` seconds, by default
  ``3 * [runner] backoff_max`` (3 minutes with the default 60 s cap): the runner's backoff
  doubles up to that cap, so a connection still down after three full-length waits is not
  coming back by itself soon;
* a connection in state ``stopped`` (its task ended while the pipeline runs) is unhealthy;
* a sink is healthy while :attr:`~tickwire._runner.sink.RunningSink.writable`: it is open and
  its last write succeeded (a sink that is opening, or whose writes are failing and being
  retried, is not).

**Ready** (``/readyz`` 200) means every sink has been open and every connection has been
connected at least once since the pipeline started (latched: a later outage makes the pipeline
unhealthy, not unready).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tickwire._log import redact
from tickwire._runner.connect import State

if TYPE_CHECKING:
    from tickwire.pipeline import Pipeline

#: Down this many ``backoff_max`` and a reconnecting connection is unhealthy.
DOWN_GRACE_FACTOR = 3.0


@dataclass(frozen=True)
class HealthPolicy:
    """How long a connection may be down and still count as healthy.

    :param down_grace: seconds; ``None``: :data:`DOWN_GRACE_FACTOR` times the pipeline's
        ``[runner] backoff_max``.
    """

    down_grace: float | None = None

    def grace_for(self, pipeline: Pipeline) -> float:
        """The grace in seconds for ``pipeline``."""
        if self.down_grace is not None:
            return self.down_grace
        return DOWN_GRACE_FACTOR * pipeline.settings.runner.backoff_max.total_seconds()


@dataclass
class Health:
    """One health verdict: ``ok`` and, when not, the ``problems`` naming what is wrong."""

    ok: bool
    problems: list[dict[str, Any]]
    connections: list[dict[str, Any]]
    sinks: list[dict[str, Any]]

    def body(self) -> dict[str, Any]:
        """The JSON body ``/healthz`` answers with."""
        return {
            "status": "ok" if self.ok else "unhealthy",
            "problems": self.problems,
            "connections": self.connections,
            "sinks": self.sinks,
        }


def check_health(
    pipeline: Pipeline, *, policy: HealthPolicy | None = None, now: float | None = None
) -> Health:
    """Judge ``pipeline`` by the rules in this module's docstring.

    :param now: a :func:`time.monotonic` reading (default: now).
    """
    now = time.monotonic() if now is None else now
    grace = (policy or HealthPolicy()).grace_for(pipeline)
    problems: list[dict[str, Any]] = []
    connections: list[dict[str, Any]] = []
    for conn in pipeline.connections:
        down_for = None if conn.down_since is None else max(now - conn.down_since, 0.0)
        row: dict[str, Any] = {
            "connection": conn.label,
            "state": conn.state.value,
            "down_s": None if down_for is None else round(down_for, 3),
            "last_error": None if conn.last_error is None else redact(conn.last_error),
        }
        connections.append(row)
        why: str | None = None
        if conn.state is State.STOPPED:
            why = "stopped"
        elif conn.state is not State.CONNECTED and down_for is not None and down_for >= grace:
            why = f"{conn.state.value} for {down_for:.1f} s (more than {grace:g} s)"
        if why is not None:
            problems.append({**row, "problem": why})
    sinks: list[dict[str, Any]] = []
    for rs in pipeline.running_sinks:
        row = {"sink": rs.label, "writable": rs.writable, "queued": rs.queued}
        sinks.append(row)
        if not rs.writable:
            problems.append({**row, "problem": "not writable (opening, or writes failing)"})
    return Health(not problems, problems, connections, sinks)


@dataclass
class Readiness:
    """Latches "every connection connected once, every sink open once" for ``/readyz``.

    Call :meth:`update` often (the metrics server does, every 0.2 s and on every request).
    """

    pipeline: Pipeline
    connected: set[str] = field(default_factory=set)
    opened: set[str] = field(default_factory=set)

    def update(self) -> None:
        """Record what is connected and open right now."""
        for conn in self.pipeline.connections:
            if conn.state is State.CONNECTED:
                self.connected.add(conn.label)
        for rs in self.pipeline.running_sinks:
            if rs.writable:
                self.opened.add(rs.label)

    def waiting_for(self) -> dict[str, list[str]]:
        """What has not been connected or open yet (empty lists: ready)."""
        self.update()
        return {
            "connections": [
                c.label for c in self.pipeline.connections if c.label not in self.connected
            ],
            "sinks": [
                rs.label for rs in self.pipeline.running_sinks if rs.label not in self.opened
            ],
        }

    @property
    def ready(self) -> bool:
        """Every connection connected and every sink open, at least once."""
        waiting = self.waiting_for()
        return not waiting["connections"] and not waiting["sinks"]


__all__ = ("DOWN_GRACE_FACTOR", "Health", "HealthPolicy", "Readiness", "check_health")
