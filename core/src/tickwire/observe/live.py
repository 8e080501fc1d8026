"""The live terminal view for ``run`` and ``demo``: what flows, how fast, how late, what is wrong.

:func:`live_view` runs as a task beside the pipeline. On a terminal it draws, with :mod:`rich`,
refreshed every ``refresh`` seconds from the event loop (no refresh thread):

* per connection: state, symbols, messages per second, exchange→receive latency p50/p99 (the
  provider's histogram, bucket upper bounds), reconnects, how long it has been down, last error;
* the last price per symbol (tapping :meth:`Pipeline.events`), with its age;
* per sink: state, rows per second, backlog (queued events, and the drain time at the observed
  write rate), rows written, errors;
* gaps found, filled and confirmed empty, and backfill work waiting.

When the console is not a terminal (stdout/stderr redirected, a service, CI) it logs one plain
``pipeline.status`` line every ``log_every`` seconds instead.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import anyio
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from tickwire._log import emit, logger, redact
from tickwire._runner.connect import State
from tickwire._runner.sink import backlog_seconds
from tickwire.events import Quote, Trade
from tickwire.observe.health import check_health

if TYPE_CHECKING:
    from tickwire.pipeline import Pipeline

INFO = 20
_STATE_STYLE = {
    State.CONNECTED: "green",
    State.CONNECTING: "yellow",
    State.RECONNECTING: "bold red",
    State.STOPPED: "dim",
}


@dataclass
class Stats:
    """Rates between two samples of a pipeline's counters, and the last price per symbol."""

    pipeline: Pipeline
    prices: dict[tuple[str, str], tuple[Decimal, float]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _last: dict[str, float] = field(default_factory=dict)
    _last_at: float = 0.0
    rates: dict[str, float] = field(default_factory=dict)

    def sample(self) -> None:
        """Take a sample: every rate is over the time since the previous one."""
        now = time.monotonic()
        values = self._values()
        dt = now - self._last_at if self._last_at else 0.0
        self.rates = {
            k: (v - self._last.get(k, 0.0)) / dt if dt > 0 else 0.0 for k, v in values.items()
        }
        self._last, self._last_at = values, now

    def _values(self) -> dict[str, float]:
        m = self.pipeline.metrics
        out: dict[str, float] = {}
        for provider in {c.source.provider for c in self.pipeline.connections}:
            out[f"events:{provider}"] = m.value("events_total", provider=provider)
        for conn in self.pipeline.connections:
            out[f"frames:{conn.label}"] = m.value("frames_total", connection=conn.label)
        for rs in self.pipeline.running_sinks:
            out[f"rows:{rs.label}"] = float(rs.written)
        out["events"] = m.value("events_total")
        return out

    def observe(self, event: object) -> None:
        """Keep the last price of a trade (or a quote's mid when no trade came yet)."""
        if type(event) is Trade:
            assert isinstance(event, Trade)
            self.prices[event.provider, event.symbol] = (event.price, time.monotonic())
        elif type(event) is Quote:
            assert isinstance(event, Quote)
            key = (event.provider, event.symbol)
            stale = key not in self.prices or self.prices[key][1] < time.monotonic() - 5
            if stale and event.bid is not None and event.ask is not None:
                self.prices[key] = ((event.bid + event.ask) / 2, time.monotonic())

    def msgs_per_second(self, conn_label: str, provider: str) -> float:
        """Frames per second of one connection when the runner counts them, else the
        provider's events per second."""
        if self.pipeline.metrics.value("frames_total", connection=conn_label):
            return self.rates.get(f"frames:{conn_label}", 0.0)
        return self.rates.get(f"events:{provider}", 0.0)


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds == float("inf"):
        return ">10s"
    return f"{seconds * 1000:.1f}ms" if seconds < 1 else f"{seconds:.2f}s"


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 120 else f"{seconds / 60:.0f}m"


def render(stats: Stats) -> RenderableType:
    """The whole view for one refresh."""
    p = stats.pipeline
    m = p.metrics
    now = time.monotonic()
    health = check_health(p, now=now)
    head = Text.assemble(
        ("tickwire ", "bold"),
        f"up {_ago(now - stats.started)}  ",
        f"events {int(m.value('events_total'))} ({stats.rates.get('events', 0.0):.1f}/s)  ",
        _verdict(p, health.ok),
    )
    if not health.ok and not _stopped(p):
        head.append("  " + "; ".join(_problem(x) for x in health.problems), style="red")

    conns = Table(title="connections", title_justify="left", expand=False)
    for col in ("connection", "state", "symbols", "msgs/s", "p50", "p99", "reconnects", "down"):
        conns.add_column(col, justify="left" if col in ("connection", "state") else "right")
    conns.add_column("last error", overflow="fold", max_width=48)
    for c in p.connections:
        hist = m.histograms.get(("latency_seconds", (("provider", c.source.provider),)))
        down = "" if c.down_since is None else _ago(now - c.down_since)
        conns.add_row(
            c.label,
            Text(c.state.value, style=_STATE_STYLE.get(c.state, "")),
            str(len(c.symbols)),
            f"{stats.msgs_per_second(c.label, c.source.provider):.1f}",
            _ms(hist.quantile(0.5) if hist else None),
            _ms(hist.quantile(0.99) if hist else None),
            str(int(m.value("reconnects_total", source=c.source.label))),
            down,
            "" if c.last_error is None or c.state is State.CONNECTED else redact(c.last_error),
        )

    prices = Table(title="last prices", title_justify="left")
    for col in ("provider", "symbol", "price", "age"):
        prices.add_column(col, justify="right" if col in ("price", "age") else "left")
    for (provider, symbol), (price, at) in sorted(stats.prices.items()):
        prices.add_row(provider, symbol, f"{price}", _ago(now - at))

    sinks = Table(title="sinks", title_justify="left")
    for col in ("sink", "state", "rows/s", "queued", "backlog", "written", "errors"):
        sinks.add_column(col, justify="left" if col in ("sink", "state") else "right")
    for rs in p.running_sinks:
        state = Text("writable", "green") if rs.writable else Text("not writable", "bold red")
        sinks.add_row(
            rs.label,
            state,
            f"{stats.rates.get(f'rows:{rs.label}', 0.0):.1f}",
            str(rs.queued),
            f"{backlog_seconds(rs):.2f}s",
            str(rs.written),
            str(int(m.value("sink_errors_total", sink=rs.label))),
        )

    found = int(m.value("gaps_total"))
    filled = int(m.value("gaps_filled_total", status="filled"))
    empty = int(m.value("gaps_filled_total", status="empty"))
    pending = sum(w.pending for w in p.backfillers.values())
    malformed = int(m.value("malformed_total"))
    gaps = Text(
        f"gaps: found {found}, filled {filled}, empty {empty}, backfill pending {pending}"
        f"   malformed: {malformed}"
    )
    return Group(head, conns, prices, sinks, gaps)


def _stopped(p: Pipeline) -> bool:
    return bool(p.connections) and all(c.state is State.STOPPED for c in p.connections)


def _verdict(p: Pipeline, ok: bool) -> tuple[str, str]:
    if _stopped(p):
        return "stopped", "bold"
    return ("healthy", "bold green") if ok else ("UNHEALTHY", "bold red")


def _problem(row: dict[str, Any]) -> str:
    name = row.get("connection") or row.get("sink")
    return f"{name}: {row['problem']}"


def status_fields(stats: Stats) -> dict[str, Any]:
    """The fields of one plain ``pipeline.status`` log line."""
    p = stats.pipeline
    m = p.metrics
    states: dict[str, int] = {}
    for c in p.connections:
        states[c.state.value] = states.get(c.state.value, 0) + 1
    fields: dict[str, Any] = {
        "connections": ",".join(f"{k}:{v}" for k, v in sorted(states.items())),
        "events": int(m.value("events_total")),
        "events_per_s": round(stats.rates.get("events", 0.0), 1),
    }
    for provider in sorted({c.source.provider for c in p.connections}):
        hist = m.histograms.get(("latency_seconds", (("provider", provider),)))
        if hist is not None and hist.count:
            fields[f"{provider}_p50_ms"] = round((hist.quantile(0.5) or 0) * 1000, 1)
            fields[f"{provider}_p99_ms"] = round((hist.quantile(0.99) or 0) * 1000, 1)
    fields["written"] = {rs.label: rs.written for rs in p.running_sinks}
    fields["queued"] = {rs.label: rs.queued for rs in p.running_sinks}
    fields["gaps"] = int(m.value("gaps_total"))
    fields["malformed"] = int(m.value("malformed_total"))
    if stats.prices:
        fields["last"] = " ".join(f"{s}={pr}" for (_, s), (pr, _) in sorted(stats.prices.items()))
    problems = check_health(p).problems
    if problems:
        fields["problems"] = "; ".join(_problem(x) for x in problems)
    return fields


async def _tap(pipeline: Pipeline, stats: Stats) -> None:
    async for event in pipeline.events():
        stats.observe(event)


@contextmanager
def _logs_above(live: Live) -> Iterator[None]:
    """Send the ``tickwire`` logger's stderr/stdout handlers through the live display (which
    then prints each line above the view instead of tearing it)."""
    moved: list[tuple[logging.StreamHandler[Any], Any]] = []
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (
            sys.__stderr__,
            sys.__stdout__,
            live.console.file,
        ):
            moved.append((handler, handler.stream))
            target = sys.stderr if handler.stream is sys.__stderr__ else sys.stdout
            handler.setStream(target)
    try:
        yield
    finally:
        for handler, stream in moved:
            handler.setStream(stream)


async def live_view(
    pipeline: Pipeline,
    *,
    console: Console | None = None,
    refresh: float = 1.0,
    log_every: float = 10.0,
) -> None:
    """Show the pipeline live until cancelled (run it as a task beside the pipeline).

    :param console: where to draw (default: a :class:`rich.console.Console` on stderr).
    :param refresh: seconds between redraws on a terminal.
    :param log_every: seconds between ``pipeline.status`` lines when not on a terminal.
    """
    console = console or Console(stderr=True)
    stats = Stats(pipeline)
    stats.sample()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_tap, pipeline, stats)
        if console.is_terminal:
            with (
                Live(render(stats), console=console, auto_refresh=False) as live,
                _logs_above(live),
            ):
                try:
                    while True:
                        await anyio.sleep(refresh)
                        stats.sample()
                        live.update(render(stats), refresh=True)
                finally:
                    stats.sample()
                    live.update(render(stats), refresh=True)
        else:
            while True:
                await anyio.sleep(log_every)
                stats.sample()
                emit(INFO, "pipeline.status", **status_fields(stats))


__all__ = ("Stats", "live_view", "render", "status_fields")
