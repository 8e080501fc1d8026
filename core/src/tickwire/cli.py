"""The ``tickwire`` command: run, demo, plugins, check.

Errors a user can fix (a bad config key, a plugin that is not installed) are printed as one
clear message and exit status 2, never as a traceback. Ctrl-C and SIGTERM stop the pipeline
cleanly: the sources end, every sink is flushed, and the command exits 0.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import anyio

from tickwire import _log
from tickwire._plugins import Plugins
from tickwire._runner.backfill import SymbolProgress
from tickwire.events import INTERVAL_NS, Gap
from tickwire.history import candle_gaps
from tickwire.observe import live_view, parse_listen, serve_metrics
from tickwire.pipeline import Pipeline
from tickwire.protocols import GapSink
from tickwire.settings import ConfigError, Settings, load_settings, origin_of
from tickwire.shard import parse_shard

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickwire",
        description="Stream market data from providers into your stores.",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "text", "json"],
        help="text on a terminal, JSON lines otherwise (default: auto)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the pipeline (embedded default without a config)")
    run.add_argument("-c", "--config", type=Path, help="config file (default: ./tickwire.toml)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument(
        "--shard",
        metavar="I/N",
        help="collect only shard I of N of the symbols "
        "(stable hashing; two collectors of one shard run as a redundant pair)",
    )

    demo = sub.add_parser(
        "demo", help="offline: a simulated exchange through the full pipeline into SQLite"
    )
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument("--db", type=Path, default=Path("tickwire.db"), help="SQLite file")
    demo.add_argument("--rate", type=float, default=20.0, help="simulated trades per second")
    demo.add_argument(
        "--provider", default=None, help="which installed provider's simulator (default: coinbase)"
    )

    plugins = sub.add_parser("plugins", help="installed plugins, capabilities and limits")
    plugins.add_argument("--json", action="store_true", help="machine-readable output")

    backfill = sub.add_parser(
        "backfill", help="fetch the missing part of the candle history (no streaming)"
    )
    backfill.add_argument("-c", "--config", type=Path, help="config file")
    backfill.add_argument("--provider", help="only sources of this provider (or source name)")
    backfill.add_argument("--symbol", help="only this symbol")
    backfill.add_argument(
        "--days", type=float, help="the N x 24 h before now (default: [bootstrap] days)"
    )
    backfill.add_argument("--interval", help="candle interval (default: [bootstrap] interval)")

    gaps = sub.add_parser("gaps", help="stored coverage and gaps per symbol and interval")
    gaps.add_argument("-c", "--config", type=Path, help="config file")
    gaps.add_argument("--days", type=float, help="window to report (default: [bootstrap] days)")

    check = sub.add_parser("check", help="validate the config and try every connection")
    check.add_argument("-c", "--config", type=Path, help="config file")
    check.add_argument("--timeout", type=float, default=10.0, help="seconds per connection")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tickwire`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    _log.configure(args.log_level, args.log_format)
    try:
        if args.command == "run":
            settings = load_settings(args.config)
            if settings.metrics.listen:
                parse_listen(settings.metrics.listen)  # a bad address: one clear line
            shard = None
            if args.shard:
                try:
                    shard = parse_shard(args.shard)
                except ValueError as exc:
                    raise ConfigError(str(exc)) from None
            return anyio.run(_run, Pipeline(settings, shard=shard), args.duration)
        if args.command == "demo":
            return anyio.run(_demo, args)
        if args.command == "plugins":
            return _plugins(args.json)
        if args.command == "backfill":
            return anyio.run(_backfill, load_settings(args.config), args)
        if args.command == "gaps":
            return anyio.run(_gaps, load_settings(args.config), args.days)
        if args.command == "check":
            return anyio.run(_check, load_settings(args.config), args.timeout)
    except ConfigError as exc:
        print(f"tickwire: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130
    return 0


async def _run(pipeline: Pipeline, duration: float | None, log_every: float = 10.0) -> int:
    async with AsyncExitStack() as stack:
        listen = pipeline.settings.metrics.listen
        if listen:
            url = await stack.enter_async_context(serve_metrics(pipeline, listen))
            _log.emit(20, "metrics.listening", url=url)
        tg = await stack.enter_async_context(anyio.create_task_group())
        tg.start_soon(_stop_on_signal, pipeline, tg.cancel_scope)
        tg.start_soon(partial(live_view, pipeline, log_every=log_every))
        await pipeline.run(duration)
        tg.cancel_scope.cancel()
    return 0


async def _stop_on_signal(pipeline: Pipeline, scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            _log.emit(20, "pipeline.stopping", signal=signal.Signals(signum).name)
            pipeline.stop()
            return


async def _demo(args: argparse.Namespace) -> int:
    plugins = Plugins()
    candidates = [i for i in plugins.providers.values() if i.simulator is not None]
    if args.provider:
        candidates = [i for i in candidates if i.name == args.provider]
    candidates.sort(key=lambda i: i.name != "coinbase")
    if not candidates:
        raise ConfigError(
            "no installed provider ships a simulator for the demo; "
            "'pip install tickwire-coinbase' has one"
        )
    info = candidates[0]
    assert info.simulator is not None
    async with info.simulator() as endpoints:
        endpoints = dict(endpoints)
        symbols = endpoints.pop("symbols", None) or ["BTC-USD", "ETH-USD"]
        endpoints.pop("rate", None)
        settings = Settings(
            sources=[
                {
                    "provider": info.name,
                    "symbols": symbols,
                    "channels": sorted({"trades", "quotes"} & info.capabilities.channels)
                    or sorted(info.capabilities.channels),
                    **endpoints,
                }
            ],
            sinks=[{"type": "sqlite", "path": str(args.db), "retention": "36500d"}],
            candles={"intervals": ["1m"]},
            bootstrap={"days": 0},
        )
        pipeline = Pipeline(settings, plugins=())
        print(
            f"tickwire demo: {info.name} simulator at {endpoints.get('ws_url')} → "
            f"{args.db} (Ctrl-C to stop)",
            file=sys.stderr,
        )
        await _run(pipeline, args.duration, log_every=2.0)
    print(
        f"tickwire demo: wrote {sum(rs.written for rs in pipeline.running_sinks)} rows "
        f"to {args.db}",
        file=sys.stderr,
    )
    return 0


def _plugins(as_json: bool) -> int:
    plugins = Plugins()
    rows: list[dict[str, Any]] = []
    for record in plugins.records:
        row: dict[str, Any] = {
            "plugin": record.name,
            "distribution": record.distribution,
            "version": record.version,
            "error": record.error,
            "providers": {},
            "sinks": {},
        }
        for name in record.providers:
            info = plugins.providers[name]
            row["providers"][name] = {
                "description": info.description,
                "channels": sorted(info.capabilities.channels),
                "trade_ids": info.capabilities.trade_ids,
                "streamed_candles": sorted(info.capabilities.streamed_candles),
                "backfill": sorted(info.capabilities.backfill),
                "limits": {k: v for k, v in _struct(info.limits).items() if v is not None},
                "simulator": info.simulator is not None,
            }
        for name in record.sinks:
            row["sinks"][name] = {"description": plugins.sinks[name].description}
        rows.append(row)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        origin = row["distribution"] or "built-in"
        version = f" {row['version']}" if row["version"] else ""
        print(f"{row['plugin']}  ({origin}{version})")
        if row["error"]:
            print(f"  FAILED TO LOAD: {row['error']}")
        for name, p in row["providers"].items():
            print(f"  provider {name}: {p['description']}")
            print(f"    channels: {', '.join(p['channels'])}; trade ids: {p['trade_ids']}")
            if p["backfill"]:
                print(f"    backfill: {', '.join(p['backfill'])}")
            limits = ", ".join(f"{k}={v}" for k, v in p["limits"].items())
            print(f"    limits: {limits}")
        for name, s in row["sinks"].items():
            print(f"  sink {name}: {s['description']}")
    return 0


def _struct(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__struct_fields__}


class _Progress:
    """A progress bar per symbol on a terminal; a log line per quarter otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._quarter: dict[tuple[str, str], int] = {}

    def __call__(self, state: SymbolProgress) -> None:
        total = max(state.spans, 1)
        share = state.done / total if state.spans else 1.0
        if self.tty:
            bar = "#" * int(share * 30)
            sys.stderr.write(
                f"\r{state.source} {state.symbol:<14} {state.interval} "
                f"[{bar:<30}] {share:4.0%} {state.candles} candles"
            )
            if state.done == state.spans:
                sys.stderr.write("\n")
            sys.stderr.flush()
            return
        quarter = int(share * 4)
        key = (state.source, state.symbol)
        if self._quarter.get(key) != quarter:
            self._quarter[key] = quarter
            _log.emit(
                20,
                "backfill.progress",
                source=state.source,
                symbol=state.symbol,
                interval=state.interval,
                percent=int(share * 100),
                candles=state.candles,
            )


async def _backfill(settings: Settings, args: argparse.Namespace) -> int:
    pipeline = Pipeline(settings, stream=False)
    async with anyio.create_task_group() as tg:
        tg.start_soon(_stop_on_signal, pipeline, tg.cancel_scope)
        async with pipeline:
            report = await pipeline.bootstrap(
                days=args.days,
                interval=args.interval,
                provider=args.provider,
                symbol=args.symbol,
                progress=_Progress(),
            )
        tg.cancel_scope.cancel()
    print(f"{'source':<12} {'symbol':<16} {'interval':<8} {'spans':>6} {'candles':>9}")
    for s in report.symbols:
        print(f"{s.source:<12} {s.symbol:<16} {s.interval:<8} {s.spans:>6} {s.candles:>9}")
    slowed = (
        f"; slowed down {report.rate_limited} times for rate limits"
        if (report.rate_limited)
        else ""
    )
    print(
        f"{report.candles} candles for {len(report.symbols)} symbols in "
        f"{report.seconds:.1f} s{slowed}"
    )
    return 0


async def _gaps(settings: Settings, days: float | None) -> int:
    pipeline = Pipeline(settings, stream=False)
    async with pipeline:
        store = pipeline.history_store
        if store is None:
            raise ConfigError(
                "no configured sink can report stored history (sqlite and timescale can)"
            )
        with anyio.fail_after(60):
            while not store.writable:
                await anyio.sleep(0.05)
        window = (settings.bootstrap.days if days is None else days) * 86_400 * 1e9
        now = time.time_ns()
        intervals = sorted(
            {*settings.candles.intervals, settings.bootstrap.interval},
            key=lambda iv: INTERVAL_NS[iv],
        )
        print(
            f"{'provider':<12} {'symbol':<16} {'iv':<4} {'candles':>8} {'first':<17} "
            f"{'last':<17} {'holes':>5} {'open':>5} {'filled':>6} {'empty':>5} {'failed':>6}"
        )
        failed: list[Gap] = []
        for plan in pipeline.sources:
            provider = plan.settings.provider
            for symbol in plan.settings.symbols:
                stored_gaps = await _stored_gaps(store.sink, provider, symbol)
                failed += [g for g in stored_gaps if g.status == "failed"]
                for iv in intervals:
                    length = INTERVAL_NS[iv]
                    starts = list(
                        await store.sink.candle_starts(  # type: ignore[attr-defined]
                            provider, symbol, iv, int(now - window), now
                        )
                    )
                    kind = f"candles:{iv}"
                    covered = [
                        (g.start, g.end)
                        for g in stored_gaps
                        if g.kind == kind and g.status in ("filled", "empty")
                    ]
                    holes = [
                        h
                        for h in candle_gaps(starts, length)
                        if not any(s <= h[0] and h[1] <= e for s, e in covered)
                    ]
                    mine = [g for g in stored_gaps if g.kind in (kind, "trades")]
                    by_status = {
                        st: sum(g.status == st for g in mine)
                        for st in ("open", "filled", "empty", "failed")
                    }
                    first = _when(starts[0]) if starts else "-"
                    last = _when(starts[-1]) if starts else "-"
                    print(
                        f"{provider:<12} {symbol:<16} {iv:<4} {len(starts):>8} {first:<17} "
                        f"{last:<17} {len(holes):>5} {by_status['open']:>5} "
                        f"{by_status['filled']:>6} {by_status['empty']:>5} "
                        f"{by_status['failed']:>6}"
                    )
        if failed:
            print(f"\n{len(failed)} failed gaps, with the reason:")
            for g in failed:
                print(
                    f"{g.provider:<12} {g.symbol:<16} {g.kind:<12} {_when(g.start)} -> "
                    f"{_when(g.end)}  {g.detail or 'no reason recorded'}"
                )
    return 0


async def _stored_gaps(sink: Any, provider: str, symbol: str) -> list[Gap]:
    if isinstance(sink, GapSink):
        return list(await sink.gaps(provider, symbol))
    return []


def _when(ns: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ns / 1e9))


async def _check(settings: Settings, timeout: float) -> int:
    pipeline = Pipeline(settings)
    print(
        f"config: {origin_of(settings)}: ok "
        f"({len(pipeline.sources)} sources, {len(pipeline.running_sinks)} sinks)"
    )
    failures = 0
    for conn in pipeline.connections:
        started = time.monotonic()
        try:
            with anyio.fail_after(timeout):
                async with conn.connector.open(conn.symbols):
                    pass
            print(f"source {conn.label}: connected in {time.monotonic() - started:.2f} s")
        except Exception as exc:
            failures += 1
            reason = getattr(exc, "reason", type(exc).__name__)
            print(f"source {conn.label}: FAILED ({reason}): {_log.redact(str(exc))}")
    for rs in pipeline.running_sinks:
        try:
            with anyio.fail_after(timeout):
                await rs.sink.open()
                await rs.sink.aclose()
            print(f"sink {rs.label}: ok")
        except Exception as exc:
            failures += 1
            print(f"sink {rs.label}: FAILED: {_log.redact(str(exc))}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
