"""Observability for a running :class:`~tickwire.Pipeline`: Prometheus metrics, health and
readiness over HTTP, and a live terminal view.

Nothing here runs unless asked: the CLI starts :func:`serve_metrics` when ``[metrics] listen``
is set and :func:`live_view` for ``run`` and ``demo``; an embedding application may do either
inside its own event loop.
"""

from tickwire.observe.health import Health as Health
from tickwire.observe.health import HealthPolicy as HealthPolicy
from tickwire.observe.health import Readiness as Readiness
from tickwire.observe.health import check_health as check_health
from tickwire.observe.live import live_view as live_view
from tickwire.observe.prometheus import PipelineCollector as PipelineCollector
from tickwire.observe.prometheus import registry_for as registry_for
from tickwire.observe.server import MetricsServer as MetricsServer
from tickwire.observe.server import parse_listen as parse_listen
from tickwire.observe.server import serve_metrics as serve_metrics

__all__ = (
    "Health",
    "HealthPolicy",
    "MetricsServer",
    "PipelineCollector",
    "Readiness",
    "check_health",
    "live_view",
    "parse_listen",
    "registry_for",
    "serve_metrics",
)
