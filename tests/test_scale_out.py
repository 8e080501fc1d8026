"""Scale-out end to end (issue #12, docs/scale-out.md), every piece a real OS process.

The fake Coinbase exchange (in this process) trades several products; three collectors
(``tickwire run --shard I/N``: a redundant pair of shard 1/2 and one of shard 2/2) publish them
to a JetStream stream of this test on the local ``nats-server``; a writer (``tickwire run`` with
the ``nats`` source) stores them in PostgreSQL with the ``timescale`` sink, in a schema of this
test. The store must end with every trade the exchange made exactly once, compared field by
field with the fake's own record, through a collector killed with SIGKILL mid-run, and through
a writer killed with SIGKILL while a batch was being written and then restarted.

Needs NATS (127.0.0.1:4222, JetStream) and PostgreSQL (127.0.0.1:5432, trust): skipped without
them, failed under CI.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import anyio
import asyncpg
import nats
import pytest
from nats.aio.client import Client
from nats.js.errors import NotFoundError

from tickwire.shard import shard_of
from tickwire.testing import require_service
from tickwire_coinbase.testing import FakeCoinbase
from tickwire_nats import NatsSinkSettings
from tickwire_nats.stream import ensure_stream

sys.path.insert(0, str(Path(__file__).parent))
from scale_out_helpers import (
    NATS_URL,
    PG_DSN,
    Deployment,
    consumer,
    fake_record,
    running,
    stored,
    trade_messages,
    wait_until,
)

pytestmark = [pytest.mark.anyio, pytest.mark.service, pytest.mark.timeout(300)]

#: Six products over two shards (checked below: both shards get some).
SYMBOLS = ["AVAX-USD", "LINK-USD", "BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"]
#: Seconds any one awaited condition may take (processes start on 2 shared cores).
DEADLINE = 90.0


@pytest.fixture
async def nc() -> AsyncIterator[Client]:
    """A plain nats-py client on the local server (fails under CI when it is missing)."""
    try:
        client = await nats.connect(NATS_URL, connect_timeout=2, allow_reconnect=False)
    except Exception as exc:
        require_service(f"NATS at {NATS_URL}", exc)
    yield client
    await client.close()


@pytest.fixture
async def tag(nc: Client) -> AsyncIterator[str]:
    """The stream (``TWSCALE_<tag>``) and subject prefix of this test, created by the plugin's
    own ``ensure_stream`` before the processes start and deleted afterwards."""
    tag = uuid.uuid4().hex[:12]
    settings = NatsSinkSettings(
        type="nats", url=NATS_URL, stream=f"TWSCALE_{tag}", subject_prefix=f"twscale_{tag}"
    )
    await ensure_stream(nc.jetstream(), settings)
    yield tag
    with contextlib.suppress(NotFoundError):
        await nc.jetstream().delete_stream(settings.stream)


def test_both_shards_get_products() -> None:
    shards = {shard_of("coinbase", s, 2) for s in SYMBOLS}
    assert shards == {1, 2}


class Market:
    """Trades on the fake exchange: a repeatable random walk, round robin over the products."""

    def __init__(self, fake: FakeCoinbase, seed: int) -> None:
        self.fake = fake
        self.rnd = random.Random(seed)
        self.price = {s: Decimal(self.rnd.randint(1_000, 90_000)) for s in SYMBOLS}
        self.made = 0

    async def trade(self, n: int, pause_every: int = 20) -> None:
        """Make ``n`` trades, yielding to the event loop briefly every ``pause_every`` (a
        market that trades over time, not one burst)."""
        for i in range(n):
            symbol = SYMBOLS[self.made % len(SYMBOLS)]
            step = Decimal(self.rnd.randint(-50, 50)) / 100
            price = max(Decimal("0.01"), self.price[symbol] + step).quantize(Decimal("0.01"))
            self.price[symbol] = price
            size = (Decimal(self.rnd.randint(1, 5_000_000)) / 10**8).quantize(Decimal("1e-8"))
            side = "buy" if self.rnd.random() < 0.5 else "sell"
            await self.fake.trade(symbol, price, size, side)
            self.made += 1
            if i % pause_every == pause_every - 1:
                await anyio.sleep(0.01)


def shard1_rows(rows: list[tuple[str, str, str, str]]) -> int:
    return sum(1 for r in rows if shard_of("coinbase", r[0], 2) == 1)


async def settled(nc: Client, stream: str) -> bool:
    """The writers' consumer has delivered and acknowledged everything in the stream."""
    info = await consumer(nc, stream)
    return info is not None and info.num_pending == 0 and info.num_ack_pending == 0


async def test_redundant_collector_killed_mid_run_every_trade_stored_once(
    tmp_path: Path, nc: Client, pg: asyncpg.Connection, schema: str, tag: str
) -> None:
    """Collectors 1a + 1b (shard 1/2) and 2 (shard 2/2) → JetStream → one writer →
    PostgreSQL. Collector 1a is SIGKILLed while the market trades; trades go on after the
    kill. The store holds exactly the fake's trades, each once, and the stream held one copy
    of each (the pair's second copy was dropped by message id, not by the database)."""
    async with FakeCoinbase(SYMBOLS, seed=12, history_days=0) as fake:
        dep = Deployment(tmp_path, fake, SYMBOLS, schema, tag)
        market = Market(fake, seed=1)
        with running(dep):
            dep.writer("writer")
            c1a = dep.collector("collector-1a", "1/2")
            c1b = dep.collector("collector-1b", "1/2")
            c2 = dep.collector("collector-2", "2/2")
            await fake.wait_subscribed(3, timeout=DEADLINE)
            killed = anyio.Event()

            async def trade_through_the_kill() -> None:
                await market.trade(300)
                await killed.wait()
                await market.trade(300)  # only the survivor of the pair sees these

            async with anyio.create_task_group() as tg:
                tg.start_soon(trade_through_the_kill)

                async def shard1_flows() -> bool:
                    return shard1_rows(await stored(pg, schema)) >= 20

                await wait_until(shard1_flows, DEADLINE, "shard 1 trades reach the store", dep.logs)
                at_kill = market.made
                c1a.kill()
                killed.set()
            expected = fake_record(fake, SYMBOLS)

            async def all_stored() -> bool:
                return set(await stored(pg, schema)) >= expected

            await wait_until(all_stored, DEADLINE, "every trade stored", dep.logs)
            await wait_until(lambda: settled(nc, dep.stream), DEADLINE, "writer acked all")
            assert c1a.popen.returncode == -signal.SIGKILL
            assert c1b.alive() and c2.alive(), dep.logs()
            rows = await stored(pg, schema)
            messages = await trade_messages(nc, dep.stream, dep.prefix)
    assert at_kill < 600 and len(expected) == 600  # killed mid-run: 300+ trades came after
    assert sorted(rows) == sorted(expected)  # every trade, exact fields, none twice
    assert shard1_rows(rows) > 0 and shard1_rows(rows) < len(rows)
    assert messages == len(expected)


async def test_writer_killed_mid_batch_and_restarted_every_trade_stored_once(
    tmp_path: Path, nc: Client, pg: asyncpg.Connection, schema: str, tag: str
) -> None:
    """The writer is SIGKILLed while its sink is inside a batch (its COPY into ``trades``
    waits on a lock the test holds) with the batch's messages delivered and unacknowledged;
    more trades arrive while no writer runs; a new writer on the same durable consumer gets
    the unacknowledged messages again. The store ends with every trade once."""
    async with FakeCoinbase(SYMBOLS, seed=13, history_days=0) as fake:
        dep = Deployment(tmp_path, fake, SYMBOLS, schema, tag)
        market = Market(fake, seed=2)
        with running(dep):
            writer = dep.writer("writer-1")
            dep.collector("collector-1a", "1/2")
            dep.collector("collector-1b", "1/2")
            dep.collector("collector-2", "2/2")
            await fake.wait_subscribed(3, timeout=DEADLINE)

            await market.trade(200)
            first = fake_record(fake, SYMBOLS)

            async def first_stored() -> bool:
                return set(await stored(pg, schema)) >= first

            await wait_until(first_stored, DEADLINE, "the first trades stored", dep.logs)

            # Hold the next batch inside the sink: its COPY into trades waits on this lock.
            locker = await asyncpg.connect(PG_DSN)
            try:
                hold = locker.transaction()
                await hold.start()
                await locker.execute(f"LOCK TABLE {schema}.trades IN SHARE MODE")
                await market.trade(300)

                async def writer_inside_a_batch() -> bool:
                    blocked = await pg.fetchval(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                        "WHERE l.relation = to_regclass($1) AND NOT l.granted "
                        "AND a.query ILIKE 'COPY %'",
                        f"{schema}.trades",
                    )
                    info = await consumer(nc, dep.stream)
                    return blocked > 0 and info is not None and info.num_ack_pending > 0

                await wait_until(writer_inside_a_batch, DEADLINE, "writer mid-batch", dep.logs)
                writer.kill()
                assert writer.popen.returncode == -signal.SIGKILL
                info = await consumer(nc, dep.stream)
                assert info is not None and info.num_ack_pending > 0  # delivered, not acked
                assert set(await stored(pg, schema)) == first  # and none of it written
                await market.trade(100)  # while no writer runs
            finally:
                await locker.close()  # ends the transaction: the lock goes

            dep.writer("writer-2")
            expected = fake_record(fake, SYMBOLS)

            async def all_stored() -> bool:
                return set(await stored(pg, schema)) >= expected

            await wait_until(all_stored, DEADLINE, "every trade stored", dep.logs)
            await wait_until(lambda: settled(nc, dep.stream), DEADLINE, "writer acked all")
            rows = await stored(pg, schema)
            messages = await trade_messages(nc, dep.stream, dep.prefix)
    assert len(expected) == 600
    assert sorted(rows) == sorted(expected)
    assert messages == len(expected)
