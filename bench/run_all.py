"""Run every benchmark of ``bench/`` in turn; each prints its figures next to its reference.

::

    uv run --all-packages python bench/run_all.py              # the suite, ~10 minutes
    uv run --all-packages python bench/run_all.py --big        # bigger runs (~30+ minutes)
    uv run --all-packages python bench/run_all.py --only latency,scale
    uv run --all-packages python bench/run_all.py --skip ingest --list

Each benchmark runs as its own process (its output streams through as it comes); at the end a
summary repeats, per benchmark, the lines that compare a figure with its reference and how long
it took. Figures are measured in the same run on the same machine, so compare ratios; on a
shared machine the benchmarks that can show it print how much CPU other processes took.
Services: PostgreSQL, Redis and NATS on 127.0.0.1 (see ../shared/SERVICES.md). The ingest step
needs the shared harness set up once (``cd ../shared/bench && bash run_bench.sh --setup``); it
is skipped, and says so, when it is not.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SHARED = ROOT.parent / "shared" / "bench"
PY = sys.executable
#: Lines of any benchmark's output that the summary repeats (figure vs reference).
KEY = r"target|reference|-> (NOT )?met"


@dataclass
class Step:
    name: str
    what: str
    cmd: list[str]
    big: list[str] = field(default_factory=list)
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    #: Why it cannot run here, or ``None``.
    missing: str | None = None
    #: Lines of its output the summary repeats, besides :data:`KEY`.
    keep: str = r"$^"

    def wanted(self, line: str) -> bool:
        return bool(re.search(KEY, line) or re.search(self.keep, line))


def ingest_steps() -> list[Step]:
    client = (
        f'{PY} {BENCH / "tickwire_client.py"} --url "$URL" --n "$N" --products "$PRODUCTS"'
        ' --cafile "$CAFILE"'
    )
    work = Path(os.environ.get("WORK", "/tmp/cf-bench"))
    missing = None
    if not (SHARED / "run_bench.sh").exists():
        missing = f"{SHARED}/run_bench.sh not found"
    elif not (work / "venv-cf" / "bin" / "python").exists():
        missing = f"harness not set up: cd {SHARED} && bash run_bench.sh --setup"
    clients = "cryptofeed floor-orjson floor-aiohttp-orjson floor-picows-orjson tickwire"
    base = {
        "CLIENT_NAME": "tickwire",
        "CLIENT_CMD": client,
        "CLIENTS": os.environ.get("CLIENTS", clients),
        "QUIET_WAIT": os.environ.get("QUIET_WAIT", "0"),
        "RUNS": os.environ.get("RUNS", "1"),
        # A run with other load is tagged CONTAMINATED and kept (not retried) unless asked.
        "RETRY_CONTAMINATED": os.environ.get("RETRY_CONTAMINATED", "0"),
    }
    many = ",".join(f"S{i:04d}-USD" for i in range(1000))
    return [
        Step(
            "ingest",
            "ingest, 2 products: trades/s and CPU µs/trade, tickwire vs cryptofeed and floors",
            ["bash", "run_bench.sh"],
            cwd=SHARED,
            env={**base, "PRODUCTS": "BTC-USD,ETH-USD"},
            missing=missing,
            keep=r"^CLIENT ",
        ),
        Step(
            "ingest-1000",
            "ingest, 1,000 products: the same",
            ["bash", "run_bench.sh"],
            cwd=SHARED,
            env={**base, "PRODUCTS": many},
            missing=missing,
            keep=r"^CLIENT ",
        ),
    ]


def steps() -> list[Step]:
    py = [PY]
    return [
        *ingest_steps(),
        Step(
            "hot_path",
            "normalize stage CPU µs/frame vs the coinbase normalizer alone",
            [*py, "bench/hot_path.py", "--n", "200000"],
            big=["--n", "1000000"],
            keep="µs/frame",
        ),
        Step(
            "latency",
            "server send -> sink commit p50/p99/max at 10k and 50k msgs/s, SQLite/Redis/PG",
            [*py, "bench/latency.py", "--seconds", "4"],
            big=["--seconds", "30"],
            keep=r"^(sink |SQLite|Redis|PostgreSQL)",
        ),
        Step(
            "sqlite_sink",
            "rows/s: SQLite sink vs bare executemany",
            [*py, "bench/sqlite_sink.py", "--rows", "200000", "--rounds", "3"],
            big=["--rows", "1000000", "--rounds", "5"],
            keep=r"median|/ floor",
        ),
        Step(
            "redis_sink",
            "events/s: Redis sink vs bare pipelined redis-py",
            [*py, "bench/redis_sink.py", "--events", "100000", "--repeat", "3"],
            big=["--events", "500000", "--repeat", "5"],
            keep=r"^(workload|trades|mixed) ",
        ),
        Step(
            "timescale_sink",
            "rows/s: PostgreSQL (timescale) sink vs bare COPY",
            [*py, "bench/timescale_sink.py", "--rows", "200000", "--rounds", "3"],
            big=["--rows", "1000000", "--rounds", "5"],
            keep=r"median|/ floor",
        ),
        Step(
            "nats_bus",
            "msgs/s: NATS JetStream sink and bus source vs bare nats-py",
            [*py, "bench/nats_bus.py", "--events", "100000"],
            big=["--events", "500000"],
            keep=r"^(floor|sink|writer) ",
        ),
        Step(
            "ccxtpro",
            "trades/s: ccxt plugin vs ccxt.pro alone",
            [*py, "bench/ccxtpro.py", "--n", "100000"],
            big=["--n", "500000"],
            keep="trades/s",
        ),
        Step(
            "scale",
            "CPU µs/msg and memory per symbol, 1..10,000 products",
            [*py, "bench/scale.py", "--n", "100000", "--repeat", "3"],
            big=["--n", "1000000", "--repeat", "5"],
            keep=r"^\s*products|^\s*[\d,]+\s+\d+\s",
        ),
    ]


def run(step: Step, big: bool) -> tuple[int, float, list[str]]:
    cmd = step.cmd + (step.big if big else [])
    env = {**os.environ, **step.env}
    shown = " ".join(cmd) if len(" ".join(cmd)) < 200 else " ".join(cmd)[:200] + " ..."
    extra = " ".join(f"{k}=..." if len(v) > 60 else f"{k}={v!r}" for k, v in step.env.items())
    print(f"\n=== {step.name}: {step.what}\n$ (cd {step.cwd} && {extra} {shown})", flush=True)
    started = time.monotonic()
    keep: list[str] = []
    with subprocess.Popen(
        cmd, cwd=step.cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if step.wanted(line):
                keep.append(line.rstrip())
    return proc.returncode, time.monotonic() - started, keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated benchmark names")
    parser.add_argument("--skip", help="comma-separated benchmark names")
    parser.add_argument("--big", action="store_true", help="bigger runs (see --list)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args()
    chosen = steps()
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {s.name for s in chosen}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = [s for s in chosen if s.name in wanted]
    if args.skip:
        chosen = [s for s in chosen if s.name not in set(args.skip.split(","))]
    if args.list:
        for s in chosen:
            big = f"  (--big: {' '.join(s.big)})" if s.big else ""
            print(f"{s.name:<15} {s.what}{big}")
        return
    print(
        f"tickwire benchmark suite: {len(chosen)} benchmarks; load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at start"
    )
    summary: list[tuple[Step, int | None, float, list[str]]] = []
    for step in chosen:
        if step.missing:
            print(f"\n=== {step.name}: skipped ({step.missing})", flush=True)
            summary.append((step, None, 0.0, []))
            continue
        code, seconds, keep = run(step, args.big)
        summary.append((step, code, seconds, keep))
    print("\n=== summary (figures next to their references, as printed above)")
    failed = 0
    for step, code, seconds, keep in summary:
        if code is None:
            print(f"{step.name}: skipped ({step.missing})")
            continue
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        failed += code != 0
        print(f"{step.name}: {status}, {seconds:.0f} s")
        for line in keep:
            print(f"    {line}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
