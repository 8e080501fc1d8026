"""Soak: 1,000 symbols through the real pipeline for a while, with a random fault every few
seconds; prints events sent and stored, duplicates, gaps found and filled, and RSS over time.

The fake Coinbase exchange (``tickwire_coinbase.testing.FakeCoinbase``) runs in this process and
publishes trades over 1,000 products; the pipeline (coinbase source → SQLite, spill to disk on)
runs in a child process so its memory is measured alone. Faults, one every 2 to 6 s at random:
all connections dropped, trades withheld from the feed (a hole only the next trade or the
heartbeats reveal), handshakes refused (HTTP 503), REST rate-limited (429) during backfill,
malformed frames, the feed stalled past the keep-alive, and the SQLite file locked by another
process for a few seconds (writes fail, the buffer fills and spills). At the end the faults stop,
the backfill settles, and the store is compared with the fake's trade history::

    uv run --all-packages python bench/soak.py [--duration 600] [--symbols 1000] [--rate 400]

Reference (the issue's bar): nothing missing, no duplicate, every gap filled, RSS flat.

Memory: the SQLite sink's page cache grows with the file up to its bound (``cache_size``, 64 MiB
by default), which over 10 minutes looks like a leak of ~3 MiB/min. The soak caps it at 8 MiB
(``--sqlite-cache``; 0 for the sink's default), so the warm-up ends within a few minutes; it
prints the child's SQLite memory beside the RSS, and the RSS growth over the second half.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread

from tickwire_coinbase.testing import FakeCoinbase

BAD_FRAMES = [
    "{not json",
    '{"type": "match", "trade_id": "x", "product_id": "S0001-USD"}',
    '{"type": "match", "trade_id": 1, "price": "-1", "size": "1", "side": "buy",'
    ' "product_id": "S0001-USD", "time": "2026-01-01T00:00:00.000000Z"}',
    '{"type": "match", "trade_id": 1, "price": "NaN", "size": "1", "side": "buy",'
    ' "product_id": "S0001-USD", "time": "2026-01-01T00:00:00.000000Z"}',
    '{"type": "match", "trade_id": 1, "price": "0", "size": "1", "side": "buy",'
    ' "product_id": "S0001-USD", "time": "not a time"}',
]


#: Fault kinds and their weights in the random draw.
FAULTS = {
    "drop": 3,
    "withhold": 4,
    "reject": 2,
    "rate_limit": 2,
    "malformed": 3,
    "sink_lock": 2,
    "stall": 1,
}


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ---- the child: the pipeline under test -------------------------------------------------


async def child(args: argparse.Namespace) -> None:
    import tickwire_coinbase
    import tickwire_sqlite
    from tickwire import Pipeline, Settings

    symbols = (await anyio.Path(args.symbols_file).read_text()).split()
    settings = Settings(
        sources=[
            {
                "provider": "coinbase",
                "symbols": symbols,
                "channels": ["trades"],
                "ws_url": args.ws,
                "rest_url": args.rest,
            }
        ],
        sinks=[
            {
                "type": "sqlite",
                "path": args.db,
                "retention": None,
                "busy_timeout": "200ms",
                "buffer": 2_000,
                **({"cache_size": int(args.sqlite_cache * 2**20)} if args.sqlite_cache else {}),
            }
        ],
        candles={"intervals": [args.candles] if args.candles else []},
        bootstrap={"days": 0},
        runner={
            "backoff_initial": "100ms",
            "backoff_max": "5s",
            "deadletter": str(Path(args.db).parent / "deadletter"),
        },
    )
    pipeline = Pipeline(settings, plugins=(tickwire_coinbase, tickwire_sqlite), entry_points=False)
    if args.trace_memory:
        import tracemalloc

        tracemalloc.start(8)
    pipeline.running_sinks[0].spill_to(
        Path(args.db).parent / "spill", fsync_interval=0.1, mode=args.spill_mode
    )
    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
        async with pipeline, anyio.create_task_group() as tg:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    pipeline.stop()
                    tg.cancel_scope.cancel()
                    return

            tg.start_soon(stop_on_signal)
            if args.trace_memory:
                tg.start_soon(trace_memory, args.trace_memory)
            if args.diagnose:
                tg.start_soon(diagnose, args.diagnose, pipeline)
            tg.start_soon(record_memory, Path(args.db).parent / "memory.jsonl", args.rss_every)
    m = pipeline.metrics
    names = (
        "gaps_total",
        "malformed_total",
        "reconnects_total",
        "stalls_total",
        "sink_errors_total",
        "sink_spilled_total",
        "sink_backpressure_total",
        "backfill_rate_limited_total",
        "sink_rows_total",
    )
    print(json.dumps({n: m.value(n) for n in names}), flush=True)


async def trace_memory(every: float) -> None:
    """Every ``every`` s, print to stderr where memory grew since the first snapshot."""
    import tracemalloc

    await anyio.sleep(every)
    first = tracemalloc.take_snapshot()
    while True:
        await anyio.sleep(every)
        snap = tracemalloc.take_snapshot()
        stats = snap.compare_to(first, "traceback")[:8]
        print(
            f"--- tracemalloc: {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MiB",
            file=sys.stderr,
        )
        for stat in stats:
            print(f"{stat.size_diff / 1024:+.0f} KiB {stat.count_diff:+d} blocks", file=sys.stderr)
            for line in stat.traceback.format()[-8:]:
                print("    " + line, file=sys.stderr)
        sys.stderr.flush()


def memory_breakdown() -> dict[str, float]:
    """This process's memory in MiB: anonymous vs file-backed RSS (/proc/self/smaps_rollup),
    what SQLite's allocator holds (``sqlite3_memory_used``, page caches included) and, when
    tracing, the Python objects tracemalloc sees."""
    import ctypes
    import ctypes.util
    import tracemalloc

    out: dict[str, float] = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Rss", "Anonymous", "Private_Dirty", "Shared_Clean", "Private_Clean"):
            out[key.lower()] = int(rest.split()[0]) / 1024
    name = ctypes.util.find_library("sqlite3")
    if name:
        lib = ctypes.CDLL(name)
        lib.sqlite3_memory_used.restype = ctypes.c_int64
        out["sqlite"] = lib.sqlite3_memory_used() / 2**20
    if tracemalloc.is_tracing():
        out["traced"] = tracemalloc.get_traced_memory()[0] / 2**20
    return out


async def record_memory(path: Path, every: float) -> None:
    """Every ``every`` s, append this process's memory breakdown to ``path`` (JSON lines, with
    the wall-clock time): the parent reports SQLite's share of the RSS from it."""
    while True:
        sample = {"time": time.time(), **memory_breakdown()}
        with path.open("a") as f:
            f.write(json.dumps(sample) + "\n")
        await anyio.sleep(every)


def read_memory(path: Path) -> list[dict[str, float]]:
    """The samples :func:`record_memory` wrote (none if the file is missing)."""
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line]
    except FileNotFoundError:
        return []


async def diagnose(every: float, pipeline: Any) -> None:
    """Every ``every`` s, print to stderr the memory breakdown, the queues that may hold
    memory (backfill, sink buffer, spill) and the object types whose count grew most since the
    first sample (gc-tracked objects)."""
    import collections
    import gc

    def counts() -> collections.Counter[str]:
        return collections.Counter(type(o).__qualname__ for o in gc.get_objects())

    started = time.monotonic()
    first = counts()
    while True:
        await anyio.sleep(every)
        now = counts()
        grown = (now - first).most_common(8)
        breakdown = ", ".join(f"{k}={v:.1f}" for k, v in memory_breakdown().items())
        workers = list(pipeline.backfillers.values())
        queues = {
            "backfill_ready": sum(w.pending for w in workers),
            "backfill_later": sum(sum(map(len, w._later.values())) for w in workers),
            "backfill_rounds": sum(len(w._rounds) for w in workers),
            **{f"{n}{dict(labels)}": v for (n, labels), v in pipeline.metrics.gauges.items()},
        }
        print(
            f"--- diag t={time.monotonic() - started:.0f}s MiB: {breakdown}; "
            f"queues {queues}; "
            f"gc objects {sum(now.values())} ({sum(now.values()) - sum(first.values()):+d}); "
            f"grown: {grown}",
            file=sys.stderr,
            flush=True,
        )


# ---- the parent: market, faults, measurements -------------------------------------------


def store_figures(db: Path) -> tuple[set[tuple[str, int]], int]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute(
            "SELECT symbol, trade_id FROM trades WHERE provider = 'coinbase'"
        ).fetchall()
        total = len(rows)
        return {(s, int(t)) for s, t in rows}, total
    except sqlite3.OperationalError:
        return set(), 0
    finally:
        conn.close()


def gap_figures(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return dict(conn.execute("SELECT status, count(*) FROM gaps GROUP BY status").fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


async def parent(args: argparse.Namespace) -> None:
    rnd = random.Random(args.seed)
    products = [f"S{i:04d}-USD" for i in range(args.symbols)]
    work = Path(tempfile.mkdtemp(prefix="tickwire-soak-"))
    db = work / "soak.db"
    (work / "symbols.txt").write_text("\n".join(products))
    faults: dict[str, int] = {}
    rss: list[tuple[float, float]] = []
    async with FakeCoinbase(
        products, seed=args.seed, history_days=0.001, history_gap=60, heartbeat_interval=1.0
    ) as fake:
        log = (work / "child.log").open("wb")
        proc = subprocess.Popen(  # noqa: ASYNC220 - started once, before the measured run
            [
                sys.executable,
                __file__,
                "--child",
                "--spill-mode",
                args.spill_mode,
                "--ws",
                fake.ws_url,
                "--rest",
                fake.rest_url,
                "--db",
                str(db),
                "--symbols-file",
                str(work / "symbols.txt"),
                "--candles",
                args.candles,
                "--trace-memory",
                str(args.trace_memory),
                "--diagnose",
                str(args.diagnose),
                "--sqlite-cache",
                str(args.sqlite_cache),
                "--rss-every",
                str(args.rss_every),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
        )
        connections = -(-args.symbols // 50)
        await fake.wait_subscribed(connections, timeout=120)
        since = {p: fake.last_trade_id(p) for p in products}
        began = time.monotonic()
        began_wall = time.time()
        rss.append((0.0, rss_mib(proc.pid)))
        sent = 0
        stop = anyio.Event()

        async def market() -> None:
            nonlocal sent
            period = 1 / args.rate
            next_at = time.monotonic()
            while not stop.is_set():
                product = rnd.choice(products)
                market_price = 100 + rnd.randint(-500, 500) / 100
                await fake.trade(
                    product,
                    f"{market_price:.2f}",
                    f"0.{rnd.randint(1, 999):03d}",
                    rnd.choice(("buy", "sell")),
                )
                sent += 1
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    await anyio.sleep(delay)
                elif sent % 200 == 0:
                    await anyio.lowlevel.checkpoint()

        async def locked_db(seconds: float) -> None:
            def hold() -> None:
                conn = sqlite3.connect(db, timeout=30, isolation_level=None)
                conn.execute("BEGIN IMMEDIATE")
                time.sleep(seconds)
                conn.execute("ROLLBACK")
                conn.close()

            await anyio.to_thread.run_sync(hold)

        async def chaos() -> None:
            chosen = [(k, w) for k, w in FAULTS.items() if k in args.faults]
            if not chosen:
                return
            kinds = [k for k, _ in chosen]
            weights = [w for _, w in chosen]
            while not stop.is_set():
                with anyio.move_on_after(rnd.uniform(2, 6)):
                    await stop.wait()
                if stop.is_set():
                    return
                kind = rnd.choices(kinds, weights)[0]
                faults[kind] = faults.get(kind, 0) + 1
                if kind == "drop":
                    await fake.drop_connections()
                elif kind == "withhold":
                    for _ in range(rnd.randint(1, 5)):
                        fake.withhold_trades(rnd.choice(products), rnd.randint(1, 4))
                elif kind == "reject":
                    fake.reject_next_connections(rnd.randint(1, 5))
                    await fake.drop_connections()
                elif kind == "rate_limit":
                    fake.rate_limit_next_rest(rnd.randint(1, 4))
                elif kind == "malformed":
                    for frame in rnd.sample(BAD_FRAMES, 3):
                        await fake.send_raw(frame)
                elif kind == "sink_lock":
                    await locked_db(rnd.uniform(1, 4))
                elif kind == "stall":
                    fake.stalled = True
                    with anyio.move_on_after(11):  # coinbase keep-alive: 10 s
                        await stop.wait()
                    fake.stalled = False

        async def sample_rss() -> None:
            while not stop.is_set():
                with anyio.move_on_after(args.rss_every):
                    await stop.wait()
                rss.append((time.monotonic() - began, rss_mib(proc.pid)))

        async with anyio.create_task_group() as tg:
            tg.start_soon(market)
            tg.start_soon(chaos)
            tg.start_soon(sample_rss)
            await anyio.sleep(args.duration)
            stop.set()
        fake.stalled = False
        ran = time.monotonic() - began
        rss_end = rss_mib(proc.pid)
        memory = [
            (max(0.0, m["time"] - began_wall), m.get("sqlite", float("nan")))
            for m in read_memory(work / "memory.jsonl")
            if m["time"] >= began_wall - 1
        ]

        truth = {
            (p, t.trade_id) for p in products for t in fake.trades(p) if t.trade_id >= since[p]
        }
        settle_from = time.monotonic()
        stored: set[tuple[str, int]] = set()
        total = 0
        best, best_at = -1, settle_from
        # Let the backfill finish: until everything is there, or no progress for 60 s.
        while time.monotonic() - settle_from < args.settle:
            stored, total = await anyio.to_thread.run_sync(store_figures, db)
            open_gaps = gap_figures(db).get("open", 0)
            if truth <= stored and not open_gaps:
                break
            progress = len(stored) - open_gaps
            if progress > best:
                best, best_at = progress, time.monotonic()
            elif time.monotonic() - best_at > 60:
                break
            await anyio.sleep(2)
        settled = time.monotonic() - settle_from
        rest_requests = len(fake.rest_requests)
        proc.send_signal(signal.SIGTERM)
        out, _ = await anyio.to_thread.run_sync(lambda: proc.communicate(timeout=60))
        log.close()
    metrics: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1]) if out else {}
    stored, total = store_figures(db)
    gap_rows = gap_figures(db)
    missing = truth - stored
    extra = stored - truth
    print(f"soak: {args.symbols} symbols, {ran:.0f} s with faults, settled in {settled:.1f} s")
    print(f"  faults injected     {sum(faults.values())}: {dict(sorted(faults.items()))}")
    print(
        f"  events sent         {len(truth)} trades ({sent} published, rest pre-subscription"
        " last_match)"
    )
    print(f"  events stored       {total} trades   (reference: = sent)")
    print(f"  missing             {len(missing)}   (reference: 0) {sorted(missing)[:5]}")
    print(f"  not in the history  {len(extra)}   (reference: 0)")
    print(f"  duplicates          {total - len(stored)}   (reference: 0)")
    print(
        f"  gaps found          {int(metrics.get('gaps_total', 0))} (metric); rows by status "
        f"{gap_rows}   (reference: none open)"
    )
    print(
        f"  reconnects {int(metrics.get('reconnects_total', 0))}, stalls "
        f"{int(metrics.get('stalls_total', 0))}, "
        f"malformed {int(metrics.get('malformed_total', 0))}, "
        f"sink errors {int(metrics.get('sink_errors_total', 0))}, spilled "
        f"{int(metrics.get('sink_spilled_total', 0))}, backpressure "
        f"{int(metrics.get('sink_backpressure_total', 0))}"
    )
    print(f"  REST requests       {rest_requests} (backfill; the provider allows 10/s)")
    print(f"  RSS (MiB)           start {rss[0][1]:.1f}, end {rss_end:.1f}   (reference: flat)")
    # The first half is warm-up: SQLite's page cache fills up to its bound as the file grows.
    half = min(rss, key=lambda tm: abs(tm[0] - ran / 2))
    print(
        f"  RSS after warm-up   {half[1]:.1f} at {half[0]:.0f}s, {rss_end:.1f} at {ran:.0f}s: "
        f"{rss_end - half[1]:+.1f} MiB over the second half   (reference: ~0)"
    )
    cache = (
        f"--sqlite-cache {args.sqlite_cache:g} MiB" if args.sqlite_cache else "the sink's 64 MiB"
    )
    sqlite_end = memory[-1][1] if memory else float("nan")
    print(
        f"  SQLite memory       {sqlite_end:.1f} MiB at the end of the faults (its page cache is "
        f"bounded by {cache}; part of the RSS above)"
    )
    print("  RSS over time       " + ", ".join(f"{t:.0f}s={m:.0f}" for t, m in rss))
    print("  SQLite over time    " + ", ".join(f"{t:.0f}s={m:.1f}" for t, m in memory))
    print(f"  child exit code     {proc.returncode}; work dir {work}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds with faults")
    parser.add_argument("--symbols", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=400, help="trades per second in all")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--spill-mode",
        choices=("write-ahead", "overflow"),
        default="write-ahead",
        help="the SQLite sink's spill_mode",
    )
    parser.add_argument(
        "--settle", type=float, default=1800, help="most seconds to let the backfill finish"
    )
    parser.add_argument("--rss-every", type=float, default=30)
    parser.add_argument(
        "--candles",
        default="",
        help="also build candles of this interval, e.g. 1m (off by default: see the report)",
    )
    parser.add_argument(
        "--faults",
        type=lambda v: [k for k in v.split(",") if k],
        default=list(FAULTS),
        help="comma-separated fault kinds to inject (default: all; '' for none): "
        + ",".join(FAULTS),
    )
    parser.add_argument(
        "--trace-memory",
        type=float,
        default=0,
        help="child prints tracemalloc growth every N s to its log (slows it down)",
    )
    parser.add_argument(
        "--diagnose",
        type=float,
        default=0,
        help="child prints its memory breakdown (anon/file RSS, SQLite, gc counts) every N s",
    )
    parser.add_argument(
        "--sqlite-cache",
        type=float,
        default=8,
        help="the SQLite sink's page cache in MiB (0: the sink's default, 64 MiB); the RSS "
        "grows by up to this much while the file grows (warm-up), then stays",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ws", help=argparse.SUPPRESS)
    parser.add_argument("--rest", help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--symbols-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        anyio.run(child, args)
    else:
        os.environ.pop("TICKWIRE_LOG_LEVEL", None)
        anyio.run(parent, args)


if __name__ == "__main__":
    main()
