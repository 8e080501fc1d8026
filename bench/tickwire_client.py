"""tickwire as a client of the shared throughput harness (``../shared/bench``).

Drives the real pipeline: the installed ``coinbase`` plugin (its connector, subscriber and
normalizer), the core runner (normalize stage with value checks, gap detector, candle builder for
1m), the fan-out and the built-in ``null`` sink. Trades are counted where they arrive in the null
sink, which is later in the data path than the place cryptofeed's column counts (its callback).

With many products the coinbase plugin plans one connection per 50 (its documented best
practice): for 1,000 products that is 20 connections, and the harness server sends each
connection the whole burst, so this client receives the trades 20 times over (cryptofeed and the
floors read one connection). Compare CPU µs per trade there, not the burst's wall time.

Contract (see ../shared/bench/README.md): connect to ``--url``, subscribe to trades for
``--products``, stop after ``--n`` trades and print
``RESULT trades=<n> elapsed=<s first trade -> Nth trade> cpu=<process CPU s in that window>``.

Run it inside the workspace environment, e.g. from the repo root::

    cd ../shared/bench && CLIENT_NAME=tickwire \\
      CLIENT_CMD="$PWD/../../main/.venv/bin/python $PWD/../../main/bench/tickwire_client.py \\
      --url \\"\\$URL\\" --n \\"\\$N\\" --products \\"\\$PRODUCTS\\" --cafile \\"\\$CAFILE\\" \\
      --transport picows" \\
      CLIENTS="cryptofeed floor-orjson tickwire" bash run_bench.sh
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from operator import countOf

import anyio

from tickwire import Pipeline, Settings
from tickwire.builtin.sinks import NullSink
from tickwire.events import Event, Trade


class CountingNullSink(NullSink):
    """The ``null`` sink, noting when the first and the N-th trade arrived."""

    def __init__(self, n: int, done: anyio.Event) -> None:
        super().__init__()
        self.n = n
        self.done = done
        self.trades = self.counted = 0
        self.t0 = self.c0 = 0.0
        self.t1 = self.c1 = 0.0

    async def write_batch(self, events: Sequence[Event]) -> None:
        """Count as the null sink does, plus the trade clock."""
        await super().write_batch(events)
        trades = countOf(map(type, events), Trade)
        if trades and not self.trades:
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.trades += trades
        if self.trades >= self.n and not self.done.is_set():
            self.t1, self.c1 = time.perf_counter(), time.process_time()
            self.counted = self.trades  # what arrived by then (the shutdown flushes more)
            self.done.set()


async def main(args: argparse.Namespace) -> None:
    products = args.products.split(",")
    settings = Settings(
        sources=[
            {
                "provider": "coinbase",
                "symbols": products,
                "channels": ["trades"],
                "ws_url": args.url,
                "rest_url": "http://127.0.0.1:9",
                "transport": args.transport,
                **({"ca_file": args.cafile} if args.cafile else {}),
            }
        ],
        sinks=[],
        candles={"intervals": args.intervals.split(",") if args.intervals else []},
        bootstrap={"days": 0},
    )
    done = anyio.Event()
    sink = CountingNullSink(args.n, done)
    pipeline = Pipeline(settings, sinks=[sink])
    async with pipeline:
        await done.wait()
    elapsed = sink.t1 - sink.t0
    print(
        f"RESULT trades={sink.counted} elapsed={elapsed:.6f} cpu={sink.c1 - sink.c0:.6f}",
        flush=True,
    )


def cli() -> None:
    """Parse the harness flags and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--products", default="BTC-USD,ETH-USD")
    parser.add_argument("--cafile", default=None)
    parser.add_argument("--intervals", default="1m", help="candle intervals ('' for none)")
    parser.add_argument(
        "--transport",
        choices=("websockets", "picows"),
        default="websockets",
        help="the source's websocket transport (picows: pip install 'tickwire[picows]')",
    )
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (tickwire[uvloop])")
    args = parser.parse_args()
    logging.getLogger("tickwire").setLevel(logging.WARNING)
    # Only the plugin this client drives: other installed providers may start threads at import
    # (the IG SDK starts five), which would share the one core with the measured loop.
    os.environ.setdefault("TICKWIRE_LOAD_PLUGINS", "coinbase")
    anyio.run(main, args, backend_options={"use_uvloop": True} if args.uvloop else {})


if __name__ == "__main__":
    cli()
