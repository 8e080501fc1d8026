"""How long the host's disk takes to make a small write durable, while a benchmark runs.

Prints ``PROBING``; once a line (``GO``) arrives on stdin, writes 4 KiB and ``fdatasync``-s it
every ``--every`` seconds into a file in ``--dir`` until its stdin closes, then prints
``DISK <n> <p50 ms> <p99 ms> <max ms> <count over 50 ms>``. Run by ``bench/latency.py`` next to
the pipeline: a database commit waits for the same kind of flush, so a stall here at the same
moment is the disk's, not the sink's. Its load is small (100 syncs a second against the
hundreds of commits a second being measured).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--every", type=float, default=0.01)
    args = parser.parse_args()
    path = os.path.join(args.dir, f"disk-probe-{os.getpid()}.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    stop = threading.Event()
    block = b"\0" * 4096
    took: list[float] = []
    offset = 0
    print("PROBING", flush=True)
    sys.stdin.readline()  # GO
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    try:
        while not stop.wait(args.every):
            os.pwrite(fd, block, offset)
            offset = (offset + 4096) % (4 << 20)
            started = time.perf_counter()
            os.fdatasync(fd)
            took.append((time.perf_counter() - started) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    took.sort()
    n = len(took)
    if not n:
        print("DISK 0 nan nan nan 0", flush=True)
        return
    over = sum(1 for t in took if t > 50)
    print(
        f"DISK {n} {took[n // 2]:.2f} {took[min(n - 1, int(n * 0.99))]:.2f} {took[-1]:.2f} {over}",
        flush=True,
    )


if __name__ == "__main__":
    main()
