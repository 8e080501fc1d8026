"""``tickwire-nats-writer``: run a writer (a pipeline whose sources are ``nats``) with
ack-after-commit and the writer's defaults (``tickwire run`` is a correct writer too on a core
with ``Acked``; this also works on an older one).

::

    tickwire-nats-writer -c writer.toml [--duration SECONDS]

It is ``tickwire run`` for writers: the same config file and environment, clean stop on
Ctrl-C/SIGTERM (flushing every sink), plus :func:`tickwire_nats.attach` so a message is
acknowledged only after the sinks wrote it. ``[candles] intervals`` defaults to ``[]`` and
``[bootstrap] days`` to 0 here: the collectors build candles and backfill, writers store.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

import anyio

from tickwire import _log
from tickwire.pipeline import Pipeline
from tickwire.settings import ConfigError, load_settings, read_toml
from tickwire_nats.ack import attach

EXIT_CONFIG = 2


def build(config: str) -> Pipeline:
    """The writer pipeline of ``config``, attached for ack-after-commit."""
    from pathlib import Path

    data = read_toml(Path(config))
    overrides: dict[str, object] = {}
    if "candles" not in data:
        overrides["candles"] = {"intervals": []}
    if "bootstrap" not in data:
        overrides["bootstrap"] = {"days": 0}
    pipeline = Pipeline(load_settings(config, **overrides))
    attach(pipeline)
    return pipeline


async def _run(pipeline: Pipeline, duration: float | None) -> int:
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    _log.emit(20, "pipeline.stopping", signal=signal.Signals(signum).name)
                    pipeline.stop()
                    return

        tg.start_soon(stop_on_signal)
        await pipeline.run(duration)
        tg.cancel_scope.cancel()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``tickwire-nats-writer``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="tickwire-nats-writer",
        description="Consume a tickwire JetStream stream into the configured sinks, "
        "acknowledging only what they wrote.",
    )
    parser.add_argument("-c", "--config", default="tickwire.toml", help="config file")
    parser.add_argument("--duration", type=float, default=None, help="stop after SECONDS")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")
    parser.add_argument("--log-format", default="text", choices=["text", "json"])
    args = parser.parse_args(argv)
    _log.configure(args.log_level, args.log_format)
    try:
        return anyio.run(_run, build(args.config), args.duration)
    except ConfigError as exc:
        print(f"tickwire-nats-writer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


__all__ = ("build", "main")
