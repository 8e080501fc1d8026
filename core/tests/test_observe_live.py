"""The live view: drawn on a real pseudo-terminal by a child process, and as plain log lines
when the console is not a terminal."""

from __future__ import annotations

import fcntl
import io
import logging
import os
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

import anyio
import jsonfeed
import pytest
from jsonfeed import FakeFeed
from rich.console import Console

from tickwire import Pipeline
from tickwire._runner.connect import State
from tickwire.observe import live_view

pytestmark = pytest.mark.anyio
HERE = Path(__file__).parent

CHILD = """
import sys
from functools import partial

import anyio
from rich.console import Console

sys.path.insert(0, sys.argv[1])
import jsonfeed

from tickwire import Pipeline, Settings
from tickwire.observe import live_view
from tickwire.testing import MemorySink


async def main(url: str, deadletter: str, duration: float) -> None:
    settings = Settings(
        sources=[{"provider": "jsonfeed", "symbols": ["AAA", "BBB"], "ws_url": url}],
        sinks=[],
        candles={"intervals": []},
        bootstrap={"days": 0},
        runner={"deadletter": deadletter},
    )
    pipeline = Pipeline(settings, plugins=[jsonfeed], entry_points=False, sinks=[MemorySink()])
    console = Console()
    assert console.is_terminal, "stdout should be the pseudo-terminal"
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(live_view, pipeline, console=console, refresh=0.1))
        await pipeline.run(duration)
        await anyio.sleep(0.3)
        tg.cancel_scope.cancel()


anyio.run(main, sys.argv[2], sys.argv[3], float(sys.argv[4]))
"""

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


async def test_live_view_on_a_pseudo_terminal(feed: FakeFeed, tmp_path: Path) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 140, 0, 0))
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    env.update(TERM="xterm-256color")
    env.pop("TTY_COMPATIBLE", None)
    env.pop("FORCE_COLOR", None)
    child = subprocess.Popen(
        [sys.executable, str(script), str(HERE), feed.ws_url, str(tmp_path / "dl"), "4"],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        await feed.wait_clients(timeout=20)
        for i in range(9):
            await feed.trade("AAA", f"101.{i}5", "1")
        await feed.trade("BBB", "7.5", "2")
        with anyio.fail_after(30):
            while child.poll() is None:
                await anyio.sleep(0.05)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        reader.join(5)
        os.close(master)
    raw = b"".join(chunks).decode("utf-8", "replace")
    assert child.returncode == 0, raw[-3000:]
    assert "\x1b[" in raw, "rich drew with terminal control sequences"
    screen = ANSI.sub("", raw)
    frames = screen.split("tickwire up")[1:]
    last = frames[-1]
    # The final frame, drawn after the pipeline stopped and flushed its sink.
    assert "stopped" in last.splitlines()[0]
    assert re.search(r"jsonfeed#0\s*│\s*stopped\s*│\s*2\s*│", last), last
    assert re.search(r"jsonfeed\s*│\s*AAA\s*│\s*101\.85\s*│", last), last
    assert re.search(r"jsonfeed\s*│\s*BBB\s*│\s*7\.5\s*│", last), last
    assert re.search(
        r"MemorySink\s*│\s*writable\s*│[^\n]*│\s*0\s*│[^\n]*│\s*10\s*│\s*0\s*│", last
    ), last
    assert "gaps: found 0, filled 0, empty 0" in last
    # While the trades came in, frames showed the connection live, healthy, with its rate.
    live = [f for f in frames if re.search(r"jsonfeed#0\s*│\s*connected\s*│\s*2\s*│", f)]
    assert live, screen
    assert all("healthy" in f.splitlines()[0] for f in live)
    assert any(re.search(r"AAA\s*│\s*101\.85", f) for f in live)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_live_view_logs_plain_status_lines_off_a_terminal(
    feed: FakeFeed, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline(
        [{"provider": "jsonfeed", "symbols": ["AAA"], "ws_url": feed.ws_url}],
        intervals=(),
        plugins=[jsonfeed],
        entry_points=False,
    )
    lines = Lines()
    log = logging.getLogger("tickwire")
    log.addHandler(lines)
    old_level = log.level
    log.setLevel(logging.INFO)
    out = io.StringIO()
    try:
        async with pipeline, anyio.create_task_group() as tg:
            tg.start_soon(partial(live_view, pipeline, console=Console(file=out), log_every=0.05))
            await feed.wait_clients()
            for price in ("10.5", "11.5", "12.5"):
                await feed.trade("AAA", price, "1")

            def status() -> dict[str, object]:
                found = [r for r in lines.records if getattr(r, "event", "") == "pipeline.status"]
                return getattr(found[-1], "fields", {}) if found else {}

            with anyio.fail_after(10):
                while status().get("written") != {"MemorySink": 3}:
                    await anyio.sleep(0.02)
            assert pipeline.connections[0].state is State.CONNECTED
            fields = status()
            tg.cancel_scope.cancel()
    finally:
        log.removeHandler(lines)
        log.setLevel(old_level)
    assert out.getvalue() == "", "nothing is drawn off a terminal"
    assert fields["connections"] == "connected:1"
    assert fields["events"] == 3
    assert fields["last"] == "AAA=12.5"
    assert fields["queued"] == {"MemorySink": 0}
    assert fields["malformed"] == 0
