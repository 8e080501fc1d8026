"""Processes and probes for the scale-out tests (``test_scale_out.py``).

A *deployment* is what docs/scale-out.md describes, on one machine: collector processes
(``tickwire run -c collector.toml --shard I/N``, coinbase source on the fake exchange, ``nats``
sink), a JetStream stream of their own on the local server, and writer processes
(``tickwire run -c writer.toml``, ``nats`` source, ``timescale`` sink in a schema of their
own). Every process is a real OS process of the installed ``tickwire`` command, logging to a
file in its own directory (a pipe could fill and block it).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import asyncpg
from conftest import PG_DSN
from nats.aio.client import Client
from nats.js.api import ConsumerInfo

from tickwire_coinbase.testing import FakeCoinbase

NATS_URL = "nats://127.0.0.1:4222"
#: The writers' durable consumer (the ``nats`` provider's default name).
DURABLE = "tickwire-writer"

#: One trade as the store and the fake both know it: (symbol, trade_id, price, size), as text.
TradeKey = tuple[str, str, str, str]


def tickwire_exe() -> str:
    """The ``tickwire`` console script of this environment (.venv/bin/tickwire)."""
    import sys

    return str(Path(sys.executable).with_name("tickwire"))


def clean_env() -> dict[str, str]:
    """This environment without any ``TICKWIRE_*`` override that could redirect a process."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TICKWIRE_")}


def _toml_list(items: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


@dataclass
class Proc:
    """One ``tickwire`` process and the directory holding its config and log."""

    name: str
    directory: Path
    popen: subprocess.Popen[bytes]

    @property
    def log(self) -> str:
        path = self.directory / "tickwire.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no flush, no ack, no goodbye; wait until the OS reaped it."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def alive(self) -> bool:
        return self.popen.poll() is None


@dataclass
class Deployment:
    """Collectors, a stream and writers of one test; everything unique to it."""

    root: Path
    fake: FakeCoinbase
    symbols: list[str]
    schema: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    procs: list[Proc] = field(default_factory=list)

    @property
    def stream(self) -> str:
        return f"TWSCALE_{self.tag}"

    @property
    def prefix(self) -> str:
        return f"twscale_{self.tag}"

    def _bus_keys(self) -> str:
        return f'url = "{NATS_URL}"\nstream = "{self.stream}"\nsubject_prefix = "{self.prefix}"\n'

    def _common(self, directory: Path) -> str:
        return f"""
[candles]
intervals = []

[bootstrap]
days = 0

[runner]
backoff_initial = "50ms"
backoff_max = "500ms"
shutdown_deadline = "5s"
deadletter = "{directory / "deadletter"}"
"""

    def _spawn(self, name: str, config: str, *args: str) -> Proc:
        directory = self.root / name
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "tickwire.toml"
        path.write_text(config, encoding="utf-8")
        with (directory / "tickwire.log").open("ab") as log:
            popen = subprocess.Popen(
                [tickwire_exe(), "--log-format", "json", "run", "-c", str(path), *args],
                cwd=directory,
                env=clean_env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        proc = Proc(name, directory, popen)
        self.procs.append(proc)
        return proc

    def collector(self, name: str, shard: str) -> Proc:
        """``tickwire run --shard I/N``: coinbase trades from the fake → the ``nats`` sink."""
        directory = self.root / name
        config = f"""
[[sources]]
provider = "coinbase"
symbols  = {_toml_list(self.symbols)}
channels = ["trades"]
ws_url   = "{self.fake.ws_url}"
rest_url = "{self.fake.rest_url}"

[[sinks]]
type = "nats"
{self._bus_keys()}batch_size = 200
flush_interval = "20ms"
{self._common(directory)}"""
        return self._spawn(name, config, "--shard", shard)

    def writer(self, name: str) -> Proc:
        """``tickwire run``: the ``nats`` source (durable consumer) → the ``timescale`` sink."""
        directory = self.root / name
        config = f"""
[[sources]]
provider = "nats"
{self._bus_keys()}batch = 200
ack_wait = "3s"

[[sinks]]
type = "timescale"
dsn = "{PG_DSN}"
schema = "{self.schema}"
timescaledb = "off"
batch_size = 100
flush_interval = "20ms"
{self._common(directory)}"""
        return self._spawn(name, config)

    def logs(self) -> str:
        """Every process's log, for a failing assertion's message."""
        return "\n".join(
            f"==== {p.name} (rc={p.popen.poll()})\n{p.log[-4000:]}" for p in self.procs
        )

    def stop_all(self) -> None:
        """SIGTERM whatever still runs (a clean stop), SIGKILL what does not stop in time."""
        for proc in self.procs:
            if proc.alive():
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait(timeout=10)


@contextlib.contextmanager
def running(deployment: Deployment) -> Iterator[Deployment]:
    """Stop every process of ``deployment`` at the end, whatever happened."""
    try:
        yield deployment
    finally:
        deployment.stop_all()


def fake_record(fake: FakeCoinbase, symbols: Iterable[str]) -> set[TradeKey]:
    """Every trade the fake exchange made (and sent on its feed), by its own record."""
    return {
        (s, str(t.trade_id), format(t.price, "f"), format(t.size, "f"))
        for s in symbols
        for t in fake.trades(s)
    }


async def stored(pg: asyncpg.Connection, schema: str) -> list[TradeKey]:
    """Every row of ``<schema>.trades``, duplicates kept (empty before the sink made it)."""
    exists = await pg.fetchval("SELECT to_regclass($1)", f"{schema}.trades")
    if exists is None:
        return []
    rows = await pg.fetch(
        f"SELECT symbol, trade_id, price::text AS price, size::text AS size "
        f"FROM {schema}.trades WHERE provider = 'coinbase'"
    )
    return [(r["symbol"], r["trade_id"], r["price"], r["size"]) for r in rows]


async def consumer(nc: Client, stream: str) -> ConsumerInfo | None:
    """The writers' durable consumer, ``None`` before a writer created it."""
    from nats.js.errors import NotFoundError

    try:
        return await nc.jetstream().consumer_info(stream, DURABLE)
    except NotFoundError:
        return None


async def trade_messages(nc: Client, stream: str, prefix: str) -> int:
    """Messages the stream holds on the trade subjects (after JetStream's de-duplication)."""
    info = await nc.jetstream().stream_info(stream, subjects_filter=f"{prefix}.trade.>")
    return sum((info.state.subjects or {}).values())


async def lock_waiters(pg: asyncpg.Connection, schema: str) -> int:
    """Sessions waiting for a lock on ``<schema>.trades`` (a writer blocked mid-batch)."""
    return int(
        await pg.fetchval(
            "SELECT count(*) FROM pg_locks WHERE relation = to_regclass($1) AND NOT granted",
            f"{schema}.trades",
        )
    )


async def wait_until(
    predicate: Callable[[], Awaitable[bool]],
    timeout: float,
    what: str,
    diagnostics: Callable[[], str] = lambda: "",
) -> None:
    """Poll ``predicate`` until it is true; fail with ``what`` (and the logs) after ``timeout``."""
    try:
        with anyio.fail_after(timeout):
            while not await predicate():
                await anyio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g} s: {what}\n{diagnostics()}") from None
