"""Prometheus exposition of a pipeline's :class:`~tickwire.metrics.Metrics`, read at scrape time.

The hot path only ever does a dict increment (:meth:`Metrics.inc`); :class:`PipelineCollector`
turns what is there into Prometheus families when ``/metrics`` is scraped: every name gets the
``tickwire_`` prefix, counters end in ``_total``, histograms carry their buckets, ``_sum`` and
``_count``. Beside the runner's own metrics it adds gauges read from the pipeline's live state
(connection state, sink backlog, backfill queue, health), listed in :data:`STATE_METRICS`.

A fresh :class:`prometheus_client.CollectorRegistry` is made per pipeline: nothing is put in
``prometheus_client``'s global registry (embedding applications keep theirs).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tickwire._runner.connect import State
from tickwire.metrics import REFERENCE, Histogram, Labels, Metrics
from tickwire.observe.health import HealthPolicy, Readiness, check_health

if TYPE_CHECKING:
    from tickwire.pipeline import Pipeline

PREFIX = "tickwire_"

#: Gauges read from the pipeline's state at scrape time: name → (help, labels).
STATE_METRICS: dict[str, tuple[str, tuple[str, ...]]] = {
    "connection_up": ("1 while the connection is connected.", ("source", "connection")),
    "connection_state": (
        "1 for the connection's current state (connecting, connected, reconnecting, stopped).",
        ("source", "connection", "state"),
    ),
    "connection_down_seconds": (
        "Seconds since the connection was lost (0 while connected).",
        ("source", "connection"),
    ),
    "connection_retries": (
        "Reconnect attempts since the last healthy period (the backoff's attempt).",
        ("source", "connection"),
    ),
    "sink_writable": ("1 while the sink is open and its last write succeeded.", ("sink",)),
    "sink_queued": ("Events in the sink's buffer now.", ("sink",)),
    "sink_spilled": (
        "Events in the sink's spill file only (overflow, not also in memory).",
        ("sink",),
    ),
    "backfill_pending": ("Gaps waiting for the backfill worker.", ("source",)),
    "healthy": ("1 when /healthz answers 200.", ()),
    "ready": ("1 when /readyz answers 200.", ()),
}


def _family_name(name: str) -> str:
    """The Prometheus family name (``prometheus_client`` adds ``_total`` to counters)."""
    base = name.removesuffix("_total")
    return PREFIX + base


def _label_names(keys: Iterable[Labels]) -> list[str]:
    names: set[str] = set()
    for labels in keys:
        names.update(k for k, _ in labels)
    return sorted(names)


def _values(labels: Labels, names: list[str]) -> list[str]:
    have = dict(labels)
    return [have.get(n, "") for n in names]


def _le(bound: float) -> str:
    """A bucket bound as Prometheus writes it (``+Inf``, ``0.005``, ``1.0``)."""
    if bound == float("inf"):
        return "+Inf"
    return repr(float(bound))


def _help(name: str, kind: str) -> str:
    info = REFERENCE.get(name)
    return info.help if info is not None else f"tickwire {kind} {name}."


def collect_metrics(metrics: Metrics) -> Iterator[Metric]:
    """The Prometheus families for everything in ``metrics`` (counters, gauges, histograms)."""
    counters: defaultdict[str, list[tuple[Labels, float]]] = defaultdict(list)
    for (name, labels), value in list(metrics.counters.items()):
        counters[name].append((labels, value))
    for name, rows in sorted(counters.items()):
        names = _label_names(lab for lab, _ in rows)
        fam = CounterMetricFamily(_family_name(name), _help(name, "counter"), labels=names)
        for labels, value in rows:
            fam.add_metric(_values(labels, names), value)
        yield fam
    gauges: defaultdict[str, list[tuple[Labels, float]]] = defaultdict(list)
    for (name, labels), value in list(metrics.gauges.items()):
        gauges[name].append((labels, value))
    for name, rows in sorted(gauges.items()):
        names = _label_names(lab for lab, _ in rows)
        gauge = GaugeMetricFamily(PREFIX + name, _help(name, "gauge"), labels=names)
        for labels, value in rows:
            gauge.add_metric(_values(labels, names), value)
        yield gauge
    hists: defaultdict[str, list[tuple[Labels, Histogram]]] = defaultdict(list)
    for (name, labels), hist in list(metrics.histograms.items()):
        hists[name].append((labels, hist))
    for name, hrows in sorted(hists.items()):
        names = _label_names(lab for lab, _ in hrows)
        hfam = HistogramMetricFamily(PREFIX + name, _help(name, "histogram"), labels=names)
        for labels, hist in hrows:
            buckets: list[tuple[str, float]] = []
            running = 0
            for bound, n in zip((*hist.buckets, float("inf")), hist.counts, strict=True):
                running += n
                buckets.append((_le(bound), running))
            hfam.add_metric(_values(labels, names), buckets, hist.total)
        yield hfam


def collect_state(
    pipeline: Pipeline,
    *,
    readiness: Readiness | None = None,
    policy: HealthPolicy | None = None,
) -> Iterator[Metric]:
    """Gauges read from the pipeline's connections, sinks and backfill workers right now."""

    def gauge(name: str) -> GaugeMetricFamily:
        text, labels = STATE_METRICS[name]
        return GaugeMetricFamily(PREFIX + name, text, labels=list(labels))

    now = time.monotonic()
    up, state, down, retries = (
        gauge("connection_up"),
        gauge("connection_state"),
        gauge("connection_down_seconds"),
        gauge("connection_retries"),
    )
    for conn in pipeline.connections:
        ids = [conn.source.label, conn.label]
        up.add_metric(ids, 1.0 if conn.state is State.CONNECTED else 0.0)
        for s in State:
            state.add_metric([*ids, s.value], 1.0 if conn.state is s else 0.0)
        down.add_metric(ids, 0.0 if conn.down_since is None else max(now - conn.down_since, 0.0))
        retries.add_metric(ids, float(conn.backoff.attempt))
    yield from (up, state, down, retries)
    writable, queued, spilled = gauge("sink_writable"), gauge("sink_queued"), gauge("sink_spilled")
    for rs in pipeline.running_sinks:
        writable.add_metric([rs.label], 1.0 if rs.writable else 0.0)
        queued.add_metric([rs.label], float(rs.queued))
        spill = _spilled(rs)
        if spill is not None:
            spilled.add_metric([rs.label], float(spill))
    yield from (writable, queued, spilled)
    pending = gauge("backfill_pending")
    for label, worker in pipeline.backfillers.items():
        pending.add_metric([label], float(worker.pending))
    yield pending
    healthy = gauge("healthy")
    healthy.add_metric([], 1.0 if check_health(pipeline, policy=policy, now=now).ok else 0.0)
    yield healthy
    if readiness is not None:
        ready = gauge("ready")
        ready.add_metric([], 1.0 if readiness.ready else 0.0)
        yield ready


def _spilled(rs: object) -> int | None:
    """Events in a running sink's spill file, when the runner spills (else ``None``)."""
    spill = getattr(rs, "spill", None)
    events = getattr(spill, "events", None)
    return events if isinstance(events, int) else None


class PipelineCollector(Collector):
    """A ``prometheus_client`` collector over one pipeline (metrics and live state)."""

    def __init__(
        self,
        pipeline: Pipeline,
        *,
        readiness: Readiness | None = None,
        policy: HealthPolicy | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.readiness = readiness
        self.policy = policy

    def collect(self) -> Iterable[Metric]:
        """Every family, built from the pipeline as it is now."""
        yield from collect_metrics(self.pipeline.metrics)
        yield from collect_state(self.pipeline, readiness=self.readiness, policy=self.policy)


def registry_for(
    pipeline: Pipeline,
    *,
    readiness: Readiness | None = None,
    policy: HealthPolicy | None = None,
) -> CollectorRegistry:
    """A fresh registry holding only ``pipeline``'s collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(pipeline, readiness=readiness, policy=policy))
    return registry


def exposition(registry: CollectorRegistry, accept: str = "") -> tuple[bytes, str]:
    """The scrape body and its content type (OpenMetrics when ``accept`` asks for it)."""
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


__all__ = (
    "PREFIX",
    "STATE_METRICS",
    "PipelineCollector",
    "collect_metrics",
    "collect_state",
    "exposition",
    "registry_for",
)
