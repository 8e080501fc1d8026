"""The pipeline: sources → normalize → processors → sinks, as one embeddable object.

::

    from tickwire import Pipeline, load_settings

    async with Pipeline(load_settings("tickwire.toml")) as pipeline:
        async for event in pipeline.events():
            ...

No global state: each pipeline owns its plugin manager, metrics and tasks. It installs no signal
handlers and configures no logging (the CLI does both).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import anyio
from anyio.abc import TaskGroup, TaskStatus

from tickwire._log import emit
from tickwire._plugins import Plugins
from tickwire._runner.backfill import (
    BackfillWorker,
    BootstrapReport,
    SymbolProgress,
    plan_history,
)
from tickwire._runner.connect import ConnectionRunner
from tickwire._runner.normalize import FrameHandler
from tickwire._runner.sink import Fanout, RunningSink
from tickwire._runner.subscribe import plan_connections
from tickwire.candles import CandleBuilder
from tickwire.deadletter import DeadLetter
from tickwire.events import INTERVAL_NS, Event, Gap, Interval
from tickwire.gaps import GapDetector
from tickwire.history import align
from tickwire.metrics import Metrics
from tickwire.protocols import CoverageSink, ProviderInfo, Sink
from tickwire.settings import (
    ConfigError,
    Settings,
    SinkSettings,
    SourceSettings,
    origin_of,
    validate_entry,
)
from tickwire.shard import select
from tickwire.spill import SpillInUse

INFO, WARNING = 20, 30
#: Seconds between candle-builder ticks (closing buckets on time).
TICK = 0.25
#: Seconds between retention passes.
RETENTION_EVERY = 3600.0


@dataclass
class SourcePlan:
    """One configured source, validated, with its connections planned."""

    settings: SourceSettings
    info: ProviderInfo
    groups: list[list[str]]


class Pipeline:
    """A running (or ready to run) tickwire pipeline.

    :param settings: the configuration (see :func:`tickwire.load_settings`); default: the
        embedded default.
    :param plugins: extra plugin objects or modules to register beside the installed ones.
    :param entry_points: load installed plugins (group ``tickwire``); ``False`` for a pipeline
        made only of ``plugins`` and the built-ins.
    :param sinks: extra :class:`~tickwire.protocols.Sink` objects, used beside the configured
        ones (each with default batching).
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        plugins: Iterable[object] = (),
        entry_points: bool = True,
        sinks: Sequence[Sink] = (),
        stream: bool = True,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.settings = settings if settings is not None else Settings()
        #: False: open the sinks and the backfill, but no provider connection (``backfill``).
        self.stream = stream
        self.plugins = Plugins(plugins, entry_points=entry_points)
        self.metrics = Metrics()
        where = origin_of(self.settings)
        raw_sources = self.settings.sources
        if shard is not None:
            raw_sources = _shard_sources(raw_sources, *shard)
        self.sources = [self._plan_source(i, raw, where) for i, raw in enumerate(raw_sources)]
        if not self.sources:
            raise ConfigError(f"{where}: no [[sources]]: add at least one")
        runner = self.settings.runner
        self.deadletter = DeadLetter(runner.deadletter, runner.deadletter_max_bytes)
        self.running_sinks: list[RunningSink] = []
        for i, raw in enumerate(self.settings.sinks):
            sink_settings = self._sink_settings(i, raw, where)
            sink = self.plugins.sink_for(sink_settings)
            try:
                rs = RunningSink(sink_settings, sink, self.metrics)
                if rs.spill is None and runner.spill_dir is not None:
                    rs.spill_to(
                        runner.spill_dir,
                        sink_settings.spill_max_bytes,
                        sink_settings.spill_fsync_interval.total_seconds(),
                    )
            except SpillInUse as exc:
                label = sink_settings.label
                raise ConfigError(f"{where}: [[sinks]] #{i + 1} ({label}): {exc}") from None
            self.running_sinks.append(rs)
        for extra in sinks:
            label = type(extra).__name__
            self.running_sinks.append(
                RunningSink(SinkSettings(type=label, name=label), extra, self.metrics)
            )
        self.fanout = Fanout(self.running_sinks)
        self.builder = self._candle_builder()
        self.connections: list[ConnectionRunner] = []
        self.backfillers: dict[str, BackfillWorker] = {}
        #: One per source with a backfill hook: the bootstrap's own worker, so the stream's
        #: gaps do not wait behind 30 days of history.
        self.bootstrappers: dict[str, tuple[SourcePlan, BackfillWorker]] = {}
        for plan in self.sources:
            self._wire_source(plan)
        self._tg: TaskGroup | None = None
        self._scope: anyio.CancelScope | None = None
        self._stopped: anyio.Event | None = None
        self._stop_requested = False
        self._sinks_done = 0

    # ---- construction ------------------------------------------------------------------

    def _plan_source(self, index: int, raw: dict[str, Any], where: str) -> SourcePlan:
        provider = raw.get("provider")
        if not isinstance(provider, str):
            raise ConfigError(
                f"{where}: sources[{index}].provider: required key is missing "
                f"(installed: {', '.join(sorted(self.plugins.providers))})"
            )
        info = self.plugins.provider(provider)
        settings = validate_entry(info.settings, raw, where, f"sources[{index}].")
        channels = set(settings.channels)
        unsupported = channels - set(info.capabilities.channels)
        if unsupported:
            raise ConfigError(
                f"{where}: sources[{index}].channels: {info.name} cannot stream "
                f"{', '.join(sorted(unsupported))}; valid: "
                f"{', '.join(sorted(info.capabilities.channels))}"
            )
        return SourcePlan(settings, info, plan_connections(settings, info, where))

    def _sink_settings(self, index: int, raw: dict[str, Any], where: str) -> SinkSettings:
        kind = raw.get("type")
        if not isinstance(kind, str):
            raise ConfigError(
                f"{where}: sinks[{index}].type: required key is missing "
                f"(installed: {', '.join(sorted(self.plugins.sinks))})"
            )
        info = self.plugins.sink(kind)
        settings: SinkSettings = validate_entry(info.settings, raw, where, f"sinks[{index}].")
        return settings

    def _candle_builder(self) -> CandleBuilder | None:
        intervals: list[Interval] = list(self.settings.candles.intervals)
        if not intervals:
            return None
        basis: dict[str, Any] = {}
        streamed: dict[str, frozenset[str]] = {}
        for plan in self.sources:
            name = plan.settings.provider
            channels = set(plan.settings.channels)
            if "trades" not in channels and "quotes" in channels:
                basis[name] = plan.info.capabilities.candle_basis
                if basis[name] == "trade":
                    basis[name] = "mid"
            if "candles" in channels:
                streamed[name] = plan.info.capabilities.streamed_candles
        return CandleBuilder(
            intervals,
            grace=int(self.settings.candles.grace.total_seconds() * 1e9),
            basis=basis,
            streamed=streamed,
            metrics=self.metrics,
        )

    def _wire_source(self, plan: SourcePlan) -> None:
        settings, info = plan.settings, plan.info
        connector = self.plugins.connector(settings, info)
        subscriber = self.plugins.subscriber(settings, info)
        backfiller = self.plugins.backfiller(settings, info)
        detector = GapDetector(
            settings.provider, sequential=info.capabilities.trade_ids == "sequential"
        )
        worker: BackfillWorker | None = None
        if backfiller is not None:
            worker = BackfillWorker(
                settings.label,
                backfiller,
                self._publish_backfill,
                self.metrics,
                requests_per_second=info.limits.rest_requests_per_second,
            )
            self.backfillers[settings.label] = worker
            self.bootstrappers[settings.label] = (
                plan,
                BackfillWorker(
                    settings.label,
                    backfiller,
                    self._publish_backfill,
                    self.metrics,
                    requests_per_second=info.limits.rest_requests_per_second,
                ),
            )

        def on_gaps(gaps: Sequence[Gap], worker: BackfillWorker | None = worker) -> None:
            if worker is None:
                return
            worker.submit([g for g in gaps if _fillable(g, info)])
            # The candles of the buckets a trade gap touched were built without the missing
            # trades: refetch them from the provider once those buckets have closed.
            for gap in gaps:
                if gap.kind == "trades":
                    for candle_gap, due in self._candle_refetch(gap, info):
                        worker.submit_at(due, candle_gap)

        def on_lost(symbols: Sequence[str]) -> None:
            detector.disconnected(symbols, time.time_ns())

        for index, group in enumerate(plan.groups):

            def make_handler(settings: SourceSettings = settings) -> FrameHandler:
                return FrameHandler(
                    settings.label,
                    settings.provider,
                    self.plugins.normalizer(settings, info),
                    detector,
                    self.builder,
                    self.fanout.publish,
                    on_gaps,
                    self.deadletter,
                    self.metrics,
                )

            self.connections.append(
                ConnectionRunner(
                    settings,
                    info,
                    index,
                    group,
                    connector,
                    subscriber,
                    make_handler,
                    on_lost,
                    self.settings.runner,
                    self.metrics,
                )
            )

    @property
    def _refetch_delay_ns(self) -> int:
        return int(self.settings.candles.refetch_delay.total_seconds() * 1e9)

    def _candle_refetch(self, gap: Gap, info: ProviderInfo) -> list[tuple[Gap, int]]:
        out = []
        grace = int(self.settings.candles.grace.total_seconds() * 1e9)
        for interval in self.settings.candles.intervals:
            kind = f"candles:{interval}"
            if kind not in info.capabilities.backfill:
                continue
            length = INTERVAL_NS[interval]
            start = align(gap.start, length)
            end = align(gap.end, length) + length
            out.append(
                (
                    Gap(gap.provider, gap.symbol, kind, start, end, gap.reason),
                    end + grace + self._refetch_delay_ns,
                )
            )
        return out

    async def _publish_backfill(self, events: Sequence[Event]) -> None:
        # Backfilled trades may still correct a candle the builder keeps open.
        if self.builder is not None:
            corrections = self.builder.process(events)
            if corrections:
                events = [*events, *corrections]
        await self.fanout.publish(events)

    # ---- running -----------------------------------------------------------------------

    async def __aenter__(self) -> Pipeline:
        """Start every sink, then every connection, in the background; return ``self``."""
        if self._tg is not None:
            raise RuntimeError("this pipeline is already running")
        self._stopped = anyio.Event()
        if self._stop_requested:
            self._stopped.set()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        try:
            await self._tg.start(self._main)
        except BaseException:
            self.stop()
            await self._tg.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Stop the sources, flush every sink within the shutdown deadline, close them."""
        self.stop()
        assert self._tg is not None
        return await self._tg.__aexit__(exc_type, exc, tb)

    async def run(self, duration: float | None = None) -> None:
        """Run until ``duration`` seconds have passed, :meth:`stop` is called, or cancelled."""
        async with self:
            assert self._stopped is not None
            with anyio.move_on_after(duration):
                await self._stopped.wait()

    def stop(self) -> None:
        """Ask the pipeline to stop: the sources end, the sinks flush (safe to call twice)."""
        self._stop_requested = True
        if self._scope is not None:
            self._scope.cancel()
        if self._stopped is not None:
            self._stopped.set()

    async def _main(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        emit(
            INFO,
            "pipeline.start",
            sources=len(self.sources),
            connections=len(self.connections),
            sinks=len(self.running_sinks),
        )
        sinks_done = anyio.Event()
        async with anyio.create_task_group() as sinks_tg:
            for rs in self.running_sinks:
                sinks_tg.start_soon(self._run_sink, rs, sinks_done)
            try:
                async with anyio.create_task_group() as tg:
                    self._scope = tg.cancel_scope
                    if self._stop_requested:
                        tg.cancel_scope.cancel()
                    task_status.started()
                    for worker in self.backfillers.values():
                        tg.start_soon(worker.run)
                    if self.stream:
                        for conn in self.connections:
                            tg.start_soon(conn.run)
                        if self.builder is not None:
                            tg.start_soon(self._tick)
                        tg.start_soon(self._retention)
                        if self.settings.bootstrap.days > 0 and self.bootstrappers:
                            tg.start_soon(self._bootstrap_at_start)
            finally:
                with anyio.CancelScope(shield=True):
                    await self._shutdown(sinks_tg, sinks_done)
        if self._stopped is not None:
            self._stopped.set()

    async def _run_sink(self, rs: RunningSink, done: anyio.Event) -> None:
        try:
            await rs.run()
        finally:
            self._sinks_done += 1
            if self._sinks_done == len(self.running_sinks):
                done.set()

    async def _shutdown(self, sinks_tg: TaskGroup, sinks_done: anyio.Event) -> None:
        deadline = self.settings.runner.shutdown_deadline.total_seconds()
        with anyio.move_on_after(deadline):
            if self.builder is not None:
                last = self.builder.tick(time.time_ns()) + self.builder.flush()
                if last:
                    await self.fanout.publish(last)
        for rs in self.running_sinks:
            rs.close()
        for tap in self.fanout.taps:
            tap.close()
        for worker in self.backfillers.values():
            worker.close()
        for _, worker in self.bootstrappers.values():
            worker.close()
        if self.running_sinks:
            with anyio.move_on_after(deadline):
                await sinks_done.wait()
        if not sinks_done.is_set() and self.running_sinks:
            for rs in self.running_sinks:
                if rs.queued and rs.spill is None:  # a spill file keeps them
                    self.metrics.inc("sink_dropped_total", rs.queued, sink=rs.label)
                    rs.dropped += rs.queued
                    emit(
                        40,
                        "sink.dropped",
                        "the shutdown deadline passed with events still unwritten",
                        sink=rs.label,
                        events=rs.queued,
                    )
            sinks_tg.cancel_scope.cancel()
        emit(INFO, "pipeline.stop", written=sum(rs.written for rs in self.running_sinks))

    async def _tick(self) -> None:
        assert self.builder is not None
        forming_every = self.settings.candles.forming_every.total_seconds()
        last_forming = 0.0
        while True:
            await anyio.sleep(TICK)
            now = time.monotonic()
            forming = now - last_forming >= forming_every
            if forming:
                last_forming = now
            candles = self.builder.tick(time.time_ns(), forming=forming)
            if candles:
                await self.fanout.publish(candles)

    # ---- history ----------------------------------------------------------------------

    @property
    def history_store(self) -> RunningSink | None:
        """The sink asked what history is stored: the first that can say (SQL sinks can)."""
        for rs in self.running_sinks:
            if isinstance(rs.sink, CoverageSink):
                return rs
        return None

    async def _bootstrap_at_start(self) -> None:
        try:
            await self.bootstrap()
        except Exception as exc:  # the stream goes on; the failure is named
            emit(WARNING, "bootstrap.failed", f"{type(exc).__name__}: {exc}")

    async def bootstrap(
        self,
        *,
        days: float | None = None,
        interval: str | None = None,
        provider: str | None = None,
        symbol: str | None = None,
        progress: Callable[[SymbolProgress], None] | None = None,
    ) -> BootstrapReport:
        """Fetch the part of the last ``days`` of ``interval`` candles that is not stored yet.

        Defaults come from ``[bootstrap]``. Sources whose provider cannot backfill that interval
        are skipped (and said so). What is stored, and what was fetched before and found empty,
        is not fetched again. Runs inside ``async with pipeline`` (the sinks must be running).
        """
        days = self.settings.bootstrap.days if days is None else days
        interval = interval or self.settings.bootstrap.interval
        length = INTERVAL_NS[interval]
        kind = f"candles:{interval}"
        report = BootstrapReport()
        started = time.monotonic()
        store = self.history_store
        if store is None:
            emit(
                WARNING,
                "bootstrap.no_store",
                "no configured sink can say what history it holds: fetching the whole window",
            )
        else:
            with anyio.fail_after(60):
                while not store.writable:
                    await anyio.sleep(0.05)
        now = time.time_ns()
        end = align(now, length)
        start = now - int(days * 86_400 * 1e9)
        for label, (plan, worker) in self.bootstrappers.items():
            settings, info = plan.settings, plan.info
            if provider is not None and settings.provider != provider and label != provider:
                continue
            if kind not in info.capabilities.backfill:
                emit(INFO, "bootstrap.skipped", f"{info.name} cannot backfill {kind}", source=label)
                continue
            span_buckets = info.limits.rest_max_rows or 300
            for sym in settings.symbols:
                if symbol is not None and sym != symbol:
                    continue
                gaps = await plan_history(
                    store.sink if store else None,
                    settings.provider,
                    sym,
                    interval,
                    start,
                    end,
                    span_buckets=span_buckets,
                )
                state = SymbolProgress(
                    label,
                    sym,
                    interval,
                    spans=len(gaps),
                    buckets_missing=sum((g.end - g.start) // length for g in gaps),
                )
                report.symbols.append(state)
                if progress is not None:
                    progress(state)
                for gap in gaps:
                    state.candles += await worker.fill(gap, quiet=True)
                    state.done += 1
                    if progress is not None:
                        progress(state)
                emit(
                    INFO,
                    "bootstrap.symbol",
                    source=label,
                    symbol=sym,
                    interval=interval,
                    candles=state.candles,
                    spans=state.spans,
                )
                if self.stream:
                    # The bucket the stream started in is partial in the stream: refetch it
                    # once it has closed, so bootstrap and stream meet without a hole.
                    grace = int(self.settings.candles.grace.total_seconds() * 1e9)
                    seam = Gap(settings.provider, sym, kind, end, end + length, "startup")
                    self.backfillers[label].submit_at(
                        end + length + grace + self._refetch_delay_ns, seam
                    )
            report.rate_limited += worker.requests_rate_limited
        report.seconds = time.monotonic() - started
        emit(
            INFO,
            "bootstrap.done",
            symbols=len(report.symbols),
            candles=report.candles,
            rate_limited=report.rate_limited,
            seconds=round(report.seconds, 1),
        )
        return report

    async def _retention(self) -> None:
        while True:
            for rs in self.running_sinks:
                await rs.enforce_retention()
            await anyio.sleep(RETENTION_EVERY)

    # ---- taps and status ----------------------------------------------------------------

    async def events(self, buffer: int = 10_000) -> AsyncIterator[Event]:
        """Yield every event the pipeline produces, as the sinks get them.

        A tap that is not read applies backpressure once ``buffer`` batches wait: read it.
        """
        send, recv = anyio.create_memory_object_stream[Sequence[Event]](buffer)
        self.fanout.taps.append(send)
        try:
            async with recv:
                async for batch in recv:
                    for event in batch:
                        yield event
        finally:
            if send in self.fanout.taps:
                self.fanout.taps.remove(send)
            send.close()

    def status(self) -> dict[str, Any]:
        """Connection states and sink backlogs, for health checks and the live view."""
        return {
            "connections": [
                {
                    "source": c.label,
                    "state": c.state.value,
                    "symbols": len(c.symbols),
                    "last_error": c.last_error,
                }
                for c in self.connections
            ],
            "sinks": [
                {
                    "sink": rs.label,
                    "writable": rs.writable,
                    "queued": rs.queued,
                    "written": rs.written,
                }
                for rs in self.running_sinks
            ],
        }

    @property
    def healthy(self) -> bool:
        """What ``/healthz`` answers: every connection up (or down for less than the policy
        allows) and every sink writable (:func:`tickwire.observe.health.check_health`)."""
        from tickwire.observe.health import check_health  # observe imports this module

        return check_health(self).ok


def _shard_sources(sources: list[dict[str, Any]], index: int, count: int) -> list[dict[str, Any]]:
    """Keep, per source, only the symbols shard ``index`` of ``count`` owns (``--shard``)."""
    out = []
    for raw in sources:
        mine = select(str(raw.get("provider")), list(raw.get("symbols") or []), index, count)
        if mine:
            out.append({**raw, "symbols": mine})
    emit(
        INFO,
        "pipeline.shard",
        shard=f"{index}/{count}",
        symbols=sum(len(r["symbols"]) for r in out),
        of=sum(len(r.get("symbols") or []) for r in sources),
    )
    if not out:
        raise ConfigError(
            f"shard {index}/{count} owns none of the configured symbols; "
            "use fewer shards or list more symbols"
        )
    return out


def _fillable(gap: Gap, info: ProviderInfo) -> bool:
    return gap.kind in info.capabilities.backfill


__all__ = ("Pipeline", "SourcePlan")
