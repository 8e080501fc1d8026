"""The objects plugins hand to the runner, and what the runner hands back.

Stage hooks (see :mod:`tickwire.hookspecs`) are sync factories: each returns one of the objects
typed here, and the runner does the async work by calling their methods inside its own task
group. Plugins never own retries, backoff, stall detection, batching or metrics: the runner
wraps every one of these objects with that policy, once, for every provider and sink.

The data path, stage by stage::

    Connector.open() -> Connection          (connect)
    Subscriber.subscribe(conn, symbols)     (subscribe; again after every reconnect)
    Normalizer(frame, received_ts) -> [...] (normalize; per frame, sync, pure of I/O;
                                             BatchNormalizer: an optional batch fast path)
    candle builder, gap detector            (core processors)
    Sink.write_batch(events)                (sink)
    Backfiller.fetch(gap) -> events         (backfill; REST history)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias, runtime_checkable

import msgspec

from tickwire.events import Event, Gap, Trade

if TYPE_CHECKING:
    from tickwire.settings import SinkSettings, SourceSettings

Channel: TypeAlias = Literal["trades", "quotes", "book", "candles"]
TradeIds: TypeAlias = Literal["sequential", "unique", "none"]
Frame: TypeAlias = bytes | str


# ---- control items a normalizer may return beside events ----------------------------------


class Heartbeat(msgspec.Struct, frozen=True, gc=False):
    """A liveness signal from the provider, never stored.

    ``symbol`` is ``None`` for a connection-wide ping. ``last_trade_id`` is the id of the last
    trade the provider says it has published for ``symbol`` (Coinbase's heartbeat channel):
    when it is ahead of the last trade received, the gap detector reports missing trades.
    """

    provider: str
    symbol: str | None = None
    ts: int | None = None
    last_trade_id: str | None = None


class Notice(msgspec.Struct, frozen=True, gc=False):
    """Something the provider said that is not data: an error, a rejected subscription.

    ``symbol`` names the one symbol it concerns (``None``: the whole connection). ``fatal``
    asks the runner to drop the connection and reconnect with backoff. The runner logs it as
    ``provider.error`` (or ``subscription.rejected`` when ``symbol`` is set) and counts it.
    """

    provider: str
    message: str
    symbol: str | None = None
    code: str | None = None
    fatal: bool = False


class Subscribed(msgspec.Struct, frozen=True, gc=False):
    """The provider confirmed these subscriptions (acks may be cumulative and come late)."""

    provider: str
    symbols: tuple[str, ...]


Control: TypeAlias = Heartbeat | Notice | Subscribed
Item: TypeAlias = Event | Control


class Acked(msgspec.Struct, frozen=True, gc=False):
    """A frame whose source must learn when its events are stored (a durable bus consumer).

    A :class:`Connection` may yield this instead of a bare frame. The runner normalizes
    ``frame`` as usual and calls ``on_commit()`` once every sink has written every event that
    came of it (at once when it produced none, or was malformed and dead-lettered). It is never
    called for a frame whose events some sink did not write (a crash, or the shutdown deadline
    passing with them still queued or only in the spill file): the source then delivers it
    again. ``on_commit`` runs in the sink's task: keep it short and synchronous.
    """

    frame: Frame
    on_commit: Callable[[], None]


class MalformedFrame(ValueError):
    """Raised by a normalizer for a frame it cannot read.

    The runner counts it (per provider), logs ``message.malformed`` with a short excerpt, keeps
    the raw frame in the dead-letter file and goes on with the next frame.
    """


# ---- what a plugin declares ------------------------------------------------------------------


class Capabilities(msgspec.Struct, frozen=True):
    """What a provider can deliver.

    :param channels: the ``channels`` a source of this provider may ask for.
    :param streamed_candles: candle intervals the provider streams itself; the candle builder
        does not build those for this provider.
    :param trade_ids: ``sequential`` when trade ids are integers that go up by one per symbol
        (the core then detects missed trades from holes), ``unique`` when they are ids without
        order, ``none`` when the provider has none.
    :param backfill: what the backfill hook can fetch: ``trades`` and/or ``candles:<interval>``.
    :param candle_basis: what a built candle is made from when the source has no trades.
    """

    channels: frozenset[str] = frozenset({"trades"})
    streamed_candles: frozenset[str] = frozenset()
    trade_ids: TradeIds = "none"
    backfill: frozenset[str] = frozenset()
    candle_basis: Literal["trade", "mid", "bid"] = "trade"


class Limits(msgspec.Struct, frozen=True):
    """The provider's documented limits; the runner plans connections and request rates by them.

    :param symbols_per_connection: the runner splits a source's symbols over connections of at
        most this many (``None``: no limit).
    :param connections_per_key: how many connections one credential may hold at once
        (``None``: no limit). The runner refuses, at start-up, a plan that needs more.
    :param max_symbols: the most symbols one credential may subscribe in all (``None``: no
        limit); more is refused at config time.
    :param messages_per_second: client-to-server messages per second per connection.
    :param keepalive: seconds of silence after which a connection counts as stalled and is
        reopened (the provider's heartbeat or ping cadence plus slack).
    :param subscribe_within: seconds after connecting by which the first subscribe must be sent.
    :param rest_requests_per_second: REST requests per second for backfill.
    :param rest_max_rows: rows one REST history request may return.
    """

    symbols_per_connection: int | None = None
    connections_per_key: int | None = None
    max_symbols: int | None = None
    messages_per_second: float | None = None
    keepalive: float = 30.0
    subscribe_within: float | None = None
    rest_requests_per_second: float | None = None
    rest_max_rows: int | None = None


class ProviderInfo(msgspec.Struct, frozen=True):
    """What a provider plugin registers through ``tickwire_register_providers``.

    ``name`` is what ``[[sources]] provider`` says. A provider family such as ``ccxt`` serves
    every ``ccxt:<id>`` too (the part after ``:`` is the family's to read).
    """

    name: str
    settings: type[SourceSettings]
    capabilities: Capabilities = Capabilities()
    limits: Limits = Limits()
    description: str = ""
    simulator: Simulator | None = None


class SinkInfo(msgspec.Struct, frozen=True):
    """What a sink plugin registers through ``tickwire_register_sinks``."""

    name: str
    settings: type[SinkSettings]
    description: str = ""


#: Starts the provider's own fake exchange (for ``tickwire demo`` and tests): an async context
#: manager that serves on 127.0.0.1 and yields the ``[[sources]]`` keys that point a source at
#: it (``{"ws_url": ..., "rest_url": ...}``) while it runs.
Simulator: TypeAlias = Callable[[], AbstractAsyncContextManager[dict[str, Any]]]

#: The callback a discovery hook calls, once per provider it serves.
ProviderRegistrar: TypeAlias = Callable[[ProviderInfo], None]
#: The callback a discovery hook calls, once per sink it serves.
SinkRegistrar: TypeAlias = Callable[[SinkInfo], None]


# ---- stage objects -------------------------------------------------------------------------


@runtime_checkable
class Connection(Protocol):
    """One open connection to a provider: frames in, messages out.

    A connection may also offer ``batches()``: an async iterator of lists of frames (those that
    arrived together). The runner then reads that instead of ``__aiter__`` and passes each list
    through the normalize stage and the fan-out at once (the transports in
    :mod:`tickwire.transport` do).
    """

    async def send(self, message: Frame) -> None:
        """Send one message to the provider (the runner paces calls by the provider's limits)."""

    def __aiter__(self) -> AsyncIterator[Frame]:
        """Yield raw frames as they arrive; end (or raise) when the connection is gone."""
        ...


@runtime_checkable
class Connector(Protocol):
    """Opens connections for one source; the runner reopens through it after every drop."""

    def open(self, symbols: Sequence[str]) -> AbstractAsyncContextManager[Connection]:
        """Return an async context manager that connects on enter and closes on exit.

        Raise :class:`ConnectionFailed` (or any ``OSError``) on enter when the provider cannot be
        reached; the runner logs it and retries with backoff.
        """
        ...


class ConnectionFailed(OSError):
    """The provider could not be reached or refused the connection.

    ``reason`` is one word users can alert on: ``refused``, ``dns``, ``tls``, ``auth``,
    ``timeout``, ``http`` or ``protocol``.
    """

    def __init__(self, message: str, reason: str = "refused") -> None:
        super().__init__(message)
        self.reason = reason


@runtime_checkable
class Subscriber(Protocol):
    """Sends the subscribe messages for a batch of symbols over a fresh connection."""

    async def subscribe(self, conn: Connection, symbols: Sequence[str]) -> None:
        """Subscribe ``symbols`` (all of this connection's) to the source's channels."""


#: Turns one raw frame into events and control items: ``normalizer(frame, received_ts)``.
#: Synchronous and free of I/O; it may keep state (the open order book, say). Raise
#: :class:`MalformedFrame` for a frame it cannot read.
Normalizer: TypeAlias = Callable[[Frame, int], Iterable[Item]]


@runtime_checkable
class BatchNormalizer(Protocol):
    """A normalizer that also offers the batch fast path (optional; the runner looks for it).

    The runner hands it the frames that arrived together; it returns the trades of the longest
    run of frames, from the first, that each hold exactly one sane trade (price positive and
    finite, size finite and not negative; one trade per frame, in order), and stops without
    raising at the first frame that is anything else. Those frames skip the per-frame call
    and checks; the runner passes the rest to ``__call__`` one by one, so a malformed frame is
    still dead-lettered alone. It must give the same trades the per-frame call would.
    """

    def __call__(self, frame: Frame, received_ts: int, /) -> Iterable[Item]:
        """Normalize one frame (as a plain :data:`Normalizer`)."""
        ...

    def leading_trades(self, frames: Sequence[Frame | Acked], received_ts: int, /) -> list[Trade]:
        """The trades of the leading run of one-trade frames (see the class docstring)."""
        ...


@runtime_checkable
class Sink(Protocol):
    """Stores events. The runner batches, retries and buffers around it."""

    async def open(self) -> None:
        """Connect and create or migrate the schema. Called once before the first batch."""

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Write ``events`` durably and idempotently, or raise (the runner retries the batch)."""

    async def aclose(self) -> None:
        """Release connections. Called once, after the last batch was written."""


@runtime_checkable
class RetentionSink(Protocol):
    """A sink that prunes data older than its retention when asked (hourly and at start)."""

    async def enforce_retention(self, now_ns: int) -> int:
        """Delete what is older than the retention; return how many rows or keys went."""
        ...


@runtime_checkable
class CoverageSink(Protocol):
    """A sink that can say which spans of candles it already holds (for bootstrap and gaps)."""

    async def candle_starts(
        self, provider: str, symbol: str, interval: str, start: int, end: int
    ) -> Sequence[int]:
        """Return the sorted bucket starts stored for the key within ``[start, end)``."""
        ...


@runtime_checkable
class GapSink(Protocol):
    """A sink that can list the gaps it stores, with their status (for coverage and reports)."""

    async def gaps(self, provider: str | None = None, symbol: str | None = None) -> Sequence[Gap]:
        """Stored gaps, filtered by provider and symbol when given."""
        ...


@runtime_checkable
class Backfiller(Protocol):
    """Fetches history over the provider's REST API."""

    def fetch(self, gap: Gap) -> AsyncIterator[Event]:
        """Yield the events that fill ``gap`` (``kind`` ``trades`` or ``candles:<interval>``).

        Page through the provider's limits; raise :class:`RateLimited` on a rate-limit answer
        and the runner waits and calls again for what is still missing.
        """
        ...


@runtime_checkable
class CoalescingBackfiller(Protocol):
    """A backfiller that says when gaps cost no more fetched as one (optional; the runner
    looks for it).

    Gaps of one symbol and kind that wait together and lie at most :meth:`coalesce_within`
    apart are fetched as one span, from the first start to the last end; the runner publishes
    only the events inside the gaps and records each gap's outcome under its own row. Offer it
    where the REST API charges by pages walked rather than by span asked (a trades endpoint
    paged from the newest trade back walks through the later gap to reach the earlier one).
    """

    def coalesce_within(self, kind: str) -> int | None:
        """Nanoseconds between two gaps of ``kind`` below which one fetch costs no more than
        two; ``None`` to fetch every run of gaps apart."""
        ...


class BackfillRefused(Exception):
    """The provider will not serve this history (no access on the plan, unknown symbol…).

    Permanent: the runner logs ``gap.failed`` once with the message and does not retry.
    """


class RateLimited(Exception):
    """The provider answered "too many requests"; ``retry_after`` seconds, when it said."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


__all__ = (
    "Acked",
    "BackfillRefused",
    "Backfiller",
    "BatchNormalizer",
    "Capabilities",
    "Channel",
    "CoalescingBackfiller",
    "Connection",
    "ConnectionFailed",
    "Connector",
    "Control",
    "CoverageSink",
    "Frame",
    "GapSink",
    "Heartbeat",
    "Item",
    "Limits",
    "MalformedFrame",
    "Normalizer",
    "Notice",
    "ProviderInfo",
    "ProviderRegistrar",
    "RateLimited",
    "RetentionSink",
    "Simulator",
    "Sink",
    "SinkInfo",
    "SinkRegistrar",
    "Subscribed",
    "Subscriber",
    "TradeIds",
)
