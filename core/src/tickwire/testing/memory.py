"""A sink that keeps every event in memory, for tests."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from tickwire.events import KIND, Event


class MemorySink:
    """Keeps every batch it is given; ``events`` is everything, in order.

    ``fail_next(n)`` makes the next ``n`` writes raise, to exercise the runner's retries.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.batches = 0
        self.opened = False
        self.closed = False
        self._failures = 0
        self._changed: anyio.Event | None = None

    def fail_next(self, n: int = 1) -> None:
        """Make the next ``n`` calls of :meth:`write_batch` raise ``ConnectionError``."""
        self._failures = n

    async def open(self) -> None:
        """Mark the sink open."""
        self.opened = True

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Keep ``events`` (or fail, when asked to)."""
        if self._failures:
            self._failures -= 1
            raise ConnectionError("memory sink asked to fail")
        self.events.extend(events)
        self.batches += 1
        if self._changed is not None:
            self._changed.set()

    async def aclose(self) -> None:
        """Mark the sink closed."""
        self.closed = True

    def of(self, kind: str) -> list[Event]:
        """The events of one kind (``trade``, ``quote``, ``candle``, ``gap`` …)."""
        return [e for e in self.events if KIND[type(e)] == kind]

    async def wait_for(
        self, predicate: Callable[[MemorySink], bool], timeout: float = 10.0
    ) -> None:
        """Wait until ``predicate(self)`` holds (raises ``TimeoutError`` after ``timeout``)."""
        with anyio.fail_after(timeout):
            while not predicate(self):
                self._changed = anyio.Event()
                with anyio.move_on_after(0.05):
                    await self._changed.wait()


__all__ = ("MemorySink",)
