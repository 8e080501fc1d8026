"""In-process metrics the runner keeps for every provider and sink.

A :class:`Metrics` holds counters, gauges and histograms keyed by name and labels. It is cheap
to update on the hot path (a dict increment) and is what the Prometheus endpoint, the live view
and tests read. Names (without the ``tickwire_`` prefix Prometheus adds):

* ``events_total{provider,kind}``, ``frames_total{source}``, ``malformed_total{provider}``
* ``notices_total{provider}``, ``reconnects_total{source,reason}``, ``stalls_total{source}``
* ``gaps_total{provider,reason}``
* ``sink_rows_total{sink}``, ``sink_batches_total{sink}``, ``sink_errors_total{sink}``,
  ``sink_queue{sink}`` (gauge), ``sink_spilled_total{sink}``, ``sink_spill_full_total{sink}``,
  ``sink_wal_errors_total{sink}``, ``sink_spill_bytes{sink}`` and ``sink_spill_events{sink}``
  (gauges),
  ``sink_write_seconds{sink}`` (histogram)
* ``latency_seconds{provider}``: exchange time to receive time (histogram)
* ``candles_late_total{provider}``: trades too late to change any kept candle

:data:`REFERENCE` describes every name the runner keeps (its type and help text): the
Prometheus endpoint (:mod:`tickwire.observe`) and ``docs/observability.md`` are built from it.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

Labels = tuple[tuple[str, str], ...]

#: Histogram bucket upper bounds in seconds (latency and write time).
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

#: Bucket upper bounds for counts of rows (a sink's batch size).
ROW_BUCKETS: tuple[float, ...] = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


@dataclass(frozen=True)
class MetricInfo:
    """What one metric name means: ``kind`` is ``counter``, ``gauge`` or ``histogram``."""

    kind: str
    help: str
    labels: tuple[str, ...] = ()


#: Every metric the runner keeps, by its name in :class:`Metrics` (without ``tickwire_``).
REFERENCE: dict[str, MetricInfo] = {
    "events_total": MetricInfo(
        "counter", "Normalized events received, by provider and kind.", ("provider", "kind")
    ),
    "frames_total": MetricInfo(
        "counter", "Raw frames read from a connection.", ("source", "connection")
    ),
    "malformed_total": MetricInfo(
        "counter", "Frames that could not be used (kept in the dead-letter file).", ("provider",)
    ),
    "notices_total": MetricInfo(
        "counter", "Provider messages that are not data (errors, rejections).", ("provider",)
    ),
    "reconnects_total": MetricInfo(
        "counter",
        "Connections lost or failed, by why (closed, stall, refused, dns, tls, auth, error...).",
        ("source", "reason"),
    ),
    "stalls_total": MetricInfo(
        "counter", "Connections silent past the provider's keep-alive window.", ("source",)
    ),
    "gaps_total": MetricInfo(
        "counter", "Gaps found in the stream, by reason.", ("provider", "reason")
    ),
    "gaps_filled_total": MetricInfo(
        "counter",
        "Gaps the backfill closed: status filled, or empty (the provider had nothing).",
        ("provider", "status"),
    ),
    "backfill_requests_total": MetricInfo(
        "counter", "Backfill fetches started (one per try of a gap).", ("source",)
    ),
    "backfill_rate_limited_total": MetricInfo(
        "counter", "Backfill requests answered with a rate limit (the worker waited).", ("source",)
    ),
    "backfill_refused_total": MetricInfo(
        "counter", "Backfill requests the provider refused for good.", ("source",)
    ),
    "candles_late_total": MetricInfo(
        "counter", "Trades too late to change any kept candle.", ("provider",)
    ),
    "sink_rows_total": MetricInfo("counter", "Events written by a sink.", ("sink",)),
    "sink_batches_total": MetricInfo("counter", "Batches written by a sink.", ("sink",)),
    "sink_errors_total": MetricInfo(
        "counter", "Failed sink opens and writes (each one retried).", ("sink",)
    ),
    "sink_backpressure_total": MetricInfo(
        "counter", "Times a full sink buffer made the sources wait.", ("sink",)
    ),
    "sink_dropped_total": MetricInfo(
        "counter", "Events left unwritten when the shutdown deadline passed.", ("sink",)
    ),
    "sink_queue": MetricInfo(
        "gauge", "Events waiting in a sink's buffer (set after each batch).", ("sink",)
    ),
    "sink_spilled_total": MetricInfo(
        "counter", "Events a full buffer sent to the spill file only (overflow).", ("sink",)
    ),
    "sink_spill_full_total": MetricInfo(
        "counter", "Times the spill file was full and the sources had to wait.", ("sink",)
    ),
    "sink_wal_errors_total": MetricInfo(
        "counter",
        "Spill-file appends that failed (a disk error): write-ahead, those events waited in "
        "memory only; overflow, the sources waited.",
        ("sink",),
    ),
    "sink_spill_bytes": MetricInfo(
        "gauge", "Bytes of the spill file not yet written to the sink.", ("sink",)
    ),
    "sink_spill_events": MetricInfo(
        "gauge", "Events in the spill file only (overflow, not also in memory).", ("sink",)
    ),
    "sink_write_seconds": MetricInfo(
        "histogram", "Time one batch write took, retries not included.", ("sink",)
    ),
    "sink_batch_rows": MetricInfo("histogram", "Events per written batch.", ("sink",)),
    "latency_seconds": MetricInfo(
        "histogram",
        "Exchange time to receive time of one frame in 16 (clock skew included).",
        ("provider",),
    ),
}


@dataclass
class Histogram:
    """Cumulative-bucket histogram (Prometheus semantics) with sum and count."""

    buckets: Sequence[float] = DEFAULT_BUCKETS
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, value: float) -> None:
        """Record one observation."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def quantile(self, q: float) -> float | None:
        """An upper-bound estimate of quantile ``q`` (the bucket bound it falls in)."""
        if self.count == 0:
            return None
        rank = q * self.count
        seen = 0
        for bound, n in zip((*self.buckets, float("inf")), self.counts, strict=True):
            seen += n
            if seen >= rank:
                return bound
        return float("inf")


class Metrics:
    """Counters, gauges and histograms, labelled; one per :class:`~tickwire.Pipeline`."""

    def __init__(self) -> None:
        self.counters: defaultdict[tuple[str, Labels], float] = defaultdict(float)
        self.gauges: dict[tuple[str, Labels], float] = {}
        self.histograms: dict[tuple[str, Labels], Histogram] = {}

    @staticmethod
    def _key(name: str, labels: dict[str, str]) -> tuple[str, Labels]:
        return name, tuple(sorted(labels.items()))

    def inc(self, name: str, amount: float = 1, **labels: str) -> None:
        """Add ``amount`` to counter ``name``."""
        self.counters[self._key(name, labels)] += amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set gauge ``name``."""
        self.gauges[self._key(name, labels)] = value

    def histogram(
        self, name: str, *, buckets: Sequence[float] | None = None, **labels: str
    ) -> Histogram:
        """The histogram ``name`` with ``labels`` (created on first use).

        :param buckets: upper bounds for a new histogram (default :data:`DEFAULT_BUCKETS`,
            seconds; :data:`ROW_BUCKETS` for counts of rows). Ignored once it exists.
        """
        key = self._key(name, labels)
        hist = self.histograms.get(key)
        if hist is None:
            hist = self.histograms[key] = Histogram(
                DEFAULT_BUCKETS if buckets is None else tuple(buckets)
            )
        return hist

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's value; with fewer labels, the sum over the rest."""
        want = set(labels.items())
        total = 0.0
        for (n, lab), v in (*self.counters.items(), *self.gauges.items()):
            if n == name and want <= set(lab):
                total += v
        return total

    def series(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """Every counter and gauge as ``(name, labels, value)``."""
        for (name, labels), value in (*self.counters.items(), *self.gauges.items()):
            yield name, dict(labels), value


__all__ = ("DEFAULT_BUCKETS", "REFERENCE", "ROW_BUCKETS", "Histogram", "MetricInfo", "Metrics")
