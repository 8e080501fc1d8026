"""Every query the README documents uses the table's key index (``EXPLAIN``, asserted)."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tickwire.events import NS_PER_SECOND, Candle, Event, Gap, Quote, Trade
from tickwire_timescale import TimescaleSink

pytestmark = [pytest.mark.anyio, pytest.mark.service]

README = Path(__file__).parents[1] / "README.md"
_BLOCK = re.compile(r"```sql\n-- query: (\w+)\n(.*?)```", re.S)

#: The table each documented query reads, and so the key index it must use.
EXPECTED = {
    "latest_quote": "quotes",
    "latest_trades": "trades",
    "trades_range": "trades",
    "candles_range": "candles",
    "coverage": "candles",
    "candle_holes": "candles",
    "open_gaps": "gaps",
}


def readme_queries() -> dict[str, str]:
    return {name: sql.strip().rstrip(";") for name, sql in _BLOCK.findall(README.read_text())}


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns // NS_PER_SECOND, UTC).isoformat()


def _data() -> list[Event]:
    now = time.time_ns()
    base = now - now % (60 * NS_PER_SECOND) - 2 * 86_400 * NS_PER_SECOND
    one = Decimal(1)
    events: list[Event] = []
    symbols = ["BTC-USD"] + [f"S{i}" for i in range(299)]
    for i in range(60_000):
        sym = symbols[i % 300]
        ts = base + i * 2 * NS_PER_SECOND
        events.append(Trade("coinbase", sym, ts, ts, one, one, "buy", str(i)))
        if i % 2 == 0:
            events.append(Quote("coinbase", sym, ts, ts, one, one, one, one))
    last = now - now % (60 * NS_PER_SECOND)
    for minute in range(200):  # the last 200 minutes, so the "last day" range has data
        for sym in symbols:
            start = last - minute * 60 * NS_PER_SECOND
            events.append(Candle("coinbase", sym, "1m", start, one, one, one, one))
    for i in range(6_000):
        start = base + i * NS_PER_SECOND
        status = "open" if i % 3 == 0 else "filled"
        events.append(
            Gap("coinbase", symbols[i % 300], "trades", start, start + 1, "sequence", status)
        )
    return events


def test_the_readme_documents_every_checked_query() -> None:
    assert set(readme_queries()) == set(EXPECTED)


async def test_documented_queries_use_the_key_indexes(
    sink: TimescaleSink, pg: asyncpg.Connection, schema_name: str
) -> None:
    events = _data()
    hour = next(e.ts for e in events if isinstance(e, Trade)) + 3600 * NS_PER_SECOND
    for i in range(0, len(events), 10_000):
        await sink.write_batch(events[i : i + 10_000])
    for table in ("trades", "quotes", "candles", "gaps"):
        await pg.execute(f"ANALYZE {schema_name}.{table}")
    # Partitions made ahead hold no rows yet; a scan of an empty table costs nothing whichever
    # way, so the planner rightly seq-scans those. Every partition that holds rows must be
    # read through the key index.
    filled = {
        r[0]
        for r in await pg.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.reltuples > 0",
            schema_name,
        )
    }
    for name, sql in readme_queries().items():
        sql = sql.replace("tickwire.", f"{schema_name}.")
        # The README's example hour, moved into the hours the data covers.
        sql = sql.replace("2026-12-01 10:00:00+00", _iso(hour)).replace(
            "2026-12-01 11:00:00+00", _iso(hour + 3600 * NS_PER_SECOND)
        )
        raw = await pg.fetchval(f"EXPLAIN (FORMAT JSON) {sql}")
        plan = json.loads(raw)[0]["Plan"]
        nodes = list(_nodes(plan))
        table = EXPECTED[name]
        scans = [n for n in nodes if "Relation Name" in n]
        assert scans, (name, raw)
        used = 0
        for node in scans:
            relation = node["Relation Name"]
            assert relation == table or relation.startswith(f"{table}_p"), (name, relation)
            if relation not in filled:
                continue
            used += 1
            assert node["Node Type"] in ("Index Scan", "Index Only Scan"), (name, raw)
            assert node["Index Name"].endswith(("_key", "_pkey")), (name, node["Index Name"])
        assert used, f"{name} read no partition that holds rows: {raw}"
