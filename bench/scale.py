"""CPU cost per message as subscriptions grow, and memory per subscribed symbol.

For each size (1, 10, 100, 1,000, 10,000 products) the same total of ``match`` messages goes
through the fake Coinbase Exchange (``bench/_feed.py``: ``FakeCoinbase`` for the protocol, the
frames written as a burst, round-robin over the products, each on the connection subscribed to
it) into the real pipeline (``tickwire.pipeline.Pipeline``: the coinbase plugin, the core runner
with value checks, gap detector and 1m candle builder, fan-out, a counting ``null`` sink). The
pipeline runs in a fresh child process per size, alone on its interpreter, so its CPU and RSS
are its own; the fake runs in another process. Per size it prints:

* CPU µs per message: the pipeline process's CPU from the moment the fake starts writing the
  burst (relayed to the pipeline process on its stdin) to the N-th trade reaching the sink,
  divided by N;
* msgs/s over that window (the fake is not the limit: it writes pre-built frames);
* RSS after the run, and per subscribed symbol: ``(RSS_k - RSS_1) / (k - 1)``, the growth of
  the process over the 1-product run, so interpreter and imports cancel out (one process per
  size; ``--tracemalloc`` also prints Python allocations per symbol, and on stderr the files
  holding the most, traced from before the pipeline is built to the end; it slows the run, so
  its CPU figures are not comparable).

::

    uv run --all-packages python bench/scale.py [--sizes 1,10,100,1000,10000] [--n 200000]
        [--repeat 1] [--profile DIR]

Reference: the cost per message at 10,000 products within 20 % of the cost at 10. ``--profile
DIR`` writes a cProfile of each size's pipeline process there (slower; use the proportions).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

FEED = Path(__file__).with_name("_feed.py")


def rss_kib(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


# ---- the child: one pipeline ---------------------------------------------------------------


def child(args: argparse.Namespace) -> None:
    import anyio
    import anyio.to_thread

    import tickwire_coinbase
    from tickwire import Pipeline, Settings
    from tickwire.builtin.sinks import NullSink
    from tickwire.events import Event, Trade

    # Errors only: the burst's trades and the history's last_match are behind the clock on
    # purpose, and clock.skew warnings would only interleave with the table.
    logging.getLogger("tickwire").setLevel(logging.ERROR)
    products = Path(args.products_file).read_text().split()

    class CountingNullSink(NullSink):
        """The ``null`` sink, noting CPU and clock once the N-th fresh trade arrived."""

        def __init__(self, n: int, done: anyio.Event) -> None:
            super().__init__()
            self.n, self.done = n, done
            self.since = 1 << 62
            self.trades = 0
            self.t0 = self.c0 = self.t1 = self.c1 = 0.0

        async def write_batch(self, events: Sequence[Event]) -> None:
            await super().write_batch(events)
            since = self.since
            self.trades += sum(1 for e in events if type(e) is Trade and e.ts >= since)  # type: ignore[attr-defined]
            if self.trades >= self.n and not self.done.is_set():
                self.t1, self.c1 = time.perf_counter(), time.process_time()
                self.done.set()

    def wait_go(sink: CountingNullSink) -> None:
        """The window opens when the fake says it sends the first frame (relayed on stdin).

        Counting from the first trade at the sink would miss what the readers do before the
        sink's first batch, and with many connections that is most of a burst; the clocks are
        read here, in the thread that reads stdin, because the event loop may be too busy with
        the burst to resume a task promptly (``process_time`` is the whole process's CPU).
        """
        if sys.stdin.readline().startswith("GO"):
            sink.t0, sink.c0 = time.perf_counter(), time.process_time()

    async def started(sink: CountingNullSink) -> None:
        await anyio.to_thread.run_sync(wait_go, sink, abandon_on_cancel=True)

    async def run() -> dict[str, Any]:
        if args.tracemalloc:
            import tracemalloc

            tracemalloc.start()
        rss0 = rss_kib()
        settings = Settings(
            sources=[
                {
                    "provider": "coinbase",
                    "symbols": products,
                    "channels": ["trades"],
                    "ws_url": args.ws,
                    "rest_url": args.rest,
                }
            ],
            sinks=[],
            bootstrap={"days": 0},
            runner={
                "deadletter": str(Path(args.products_file).parent / "deadletter"),
                "spill_dir": str(Path(args.products_file).parent / "spill"),
            },
        )
        done = anyio.Event()
        sink = CountingNullSink(args.n, done)
        pipeline = Pipeline(
            settings, plugins=(tickwire_coinbase,), entry_points=False, sinks=[sink]
        )
        async with pipeline, anyio.create_task_group() as tg:
            sink.since = time.time_ns() // 1000 * 1000
            tg.start_soon(started, sink)
            print(f"UP {len(pipeline.connections)}", flush=True)
            with anyio.fail_after(args.timeout):
                await done.wait()
            if not sink.c0:
                raise RuntimeError("the window never opened (no GO from the parent)")
            rss1 = rss_kib()
            traced = 0
            if args.tracemalloc:
                import tracemalloc

                traced = tracemalloc.get_traced_memory()[0]
                top = tracemalloc.take_snapshot().statistics("filename")[:8]
                print(f"  top traced files at {len(products):,} products:", file=sys.stderr)
                for stat in top:
                    where = stat.traceback[0].filename.split("site-packages/")[-1]
                    print(f"    {stat.size / 1024:9.0f} KiB  {where}", file=sys.stderr)
            pipeline.stop()
            tg.cancel_scope.cancel()
        return {
            "trades": sink.trades,
            "elapsed": sink.t1 - sink.t0,
            "cpu": sink.c1 - sink.c0,
            "rss0": rss0,
            "rss1": rss1,
            "traced": traced,
            "connections": len(pipeline.connections),
        }

    if args.profile:
        import cProfile

        prof = cProfile.Profile()
        result = prof.runcall(anyio.run, run)
        prof.dump_stats(args.profile)
    else:
        result = anyio.run(run)
    print("RESULT " + json.dumps(result), flush=True)


# ---- the parent: one feed and one pipeline per size ------------------------------------------


def one(size: int, n: int, work: Path, tracemalloc: bool, profile: str | None) -> dict[str, Any]:
    products_file = work / f"products-{size}.txt"
    products_file.write_text("\n".join(f"S{i:05d}-USD" for i in range(size)))
    feed = subprocess.Popen(
        [
            sys.executable,
            str(FEED),
            "--mode",
            "burst",
            "--n",
            str(n),
            "--products-file",
            str(products_file),
            "--heartbeat",
            "3600",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert feed.stdin is not None and feed.stdout is not None
    try:
        ready = feed.stdout.readline().split()
        cmd = [
            sys.executable,
            __file__,
            "--child",
            "--ws",
            ready[1],
            "--rest",
            ready[2],
            "--products-file",
            str(products_file),
            "--n",
            str(n),
        ]
        if tracemalloc:
            cmd.append("--tracemalloc")
        if profile:
            cmd += ["--profile", profile]
        pipe = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert pipe.stdout is not None and pipe.stdin is not None
        try:
            up = pipe.stdout.readline().split()
            if not up or up[0] != "UP":
                raise RuntimeError(f"pipeline child did not start: {up}")
            feed.stdin.write(f"GO {up[1]}\n")
            feed.stdin.flush()
            if feed.stdout.readline().strip() != "SENDING":
                raise RuntimeError("the feed did not start sending")
            pipe.stdin.write("GO\n")
            pipe.stdin.flush()
            line = pipe.stdout.readline()
            while line and not line.startswith("RESULT "):
                line = pipe.stdout.readline()
            if not line:
                raise RuntimeError(f"pipeline child ended without a result ({pipe.wait()})")
            result: dict[str, Any] = json.loads(line[len("RESULT ") :])
            pipe.wait(timeout=60)
        finally:
            if pipe.poll() is None:
                pipe.terminate()
                pipe.wait(timeout=30)
    finally:
        feed.stdin.close()
        try:
            feed.wait(timeout=30)
        except subprocess.TimeoutExpired:
            feed.terminate()
            feed.wait(timeout=30)
    result["size"] = size
    return result


def parent(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tickwire-scale-"))
    profile_dir = Path(args.profile) if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    print(
        f"scale: {args.n:,} match messages per size through the fake Coinbase feed and the "
        f"Pipeline into the null sink; median of {args.repeat} (a fresh pipeline process each); "
        f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{'products':>8} {'conns':>5} {'msgs/s':>9} {'CPU us/msg':>10} {'RSS MiB':>8} "
        f"{'KiB/symbol':>10} {'us/msg runs':>13}"
        + (f" {'traced KiB/sym':>14}" if args.tracemalloc else "")
    )
    rows: dict[int, dict[str, Any]] = {}
    for size in sizes:
        runs = []
        for r in range(args.repeat):
            prof = str(profile_dir / f"scale-{size}-{r}.prof") if profile_dir else None
            runs.append(one(size, args.n, work, args.tracemalloc, prof))
        runs.sort(key=lambda x: x["cpu"] / x["trades"])
        best = runs[len(runs) // 2]  # the median run
        best["us"] = best["cpu"] / best["trades"] * 1e6
        best["spread"] = [x["cpu"] / x["trades"] * 1e6 for x in runs]
        best["rss1"] = statistics.median(x["rss1"] for x in runs)
        rows[size] = best
        base = rows.get(sizes[0])
        per_symbol = ""
        if base is not None and size > sizes[0]:
            per_symbol = f"{(best['rss1'] - base['rss1']) / (size - sizes[0]):10.2f}"
        traced = ""
        if args.tracemalloc and base is not None and size > sizes[0]:
            traced = f" {(best['traced'] - base['traced']) / 1024 / (size - sizes[0]):14.2f}"
        print(
            f"{size:>8,} {best['connections']:>5} {best['trades'] / best['elapsed']:>9,.0f} "
            f"{best['us']:>10.2f} {best['rss1'] / 1024:>8.1f} {per_symbol:>10} "
            f"{min(best['spread']):>6.1f}..{max(best['spread']):<5.1f}{traced}",
            flush=True,
        )
    if 10 in rows and 10_000 in rows:
        ratio = rows[10_000]["us"] / rows[10]["us"]
        verdict = "met" if ratio <= 1.2 else "NOT met"
        print(
            f"reference: cost at 10,000 products within 20% of the cost at 10: "
            f"{rows[10_000]['us']:.2f} / {rows[10]['us']:.2f} us = {ratio:.2f}x -> {verdict}"
        )
    print(
        "KiB/symbol: (RSS after the run - RSS of the first size) / (extra symbols), RSS "
        "after the run, median of the rounds"
        + ("; traced: the same with tracemalloc's traced bytes" if args.tracemalloc else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1,10,100,1000,10000")
    parser.add_argument("--n", type=int, default=200_000, help="messages per size")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size; the median is shown")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--profile", help="write a cProfile per size into this folder")
    parser.add_argument("--timeout", type=float, default=300, help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ws", help=argparse.SUPPRESS)
    parser.add_argument("--rest", help=argparse.SUPPRESS)
    parser.add_argument("--products-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
    else:
        parent(args)


if __name__ == "__main__":
    main()
