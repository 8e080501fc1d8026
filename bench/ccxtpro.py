"""Trades per second through the ccxt plugin vs ccxt.pro alone, on the same fake, same run.

Both legs stream one burst of trades from :class:`tickwire_ccxtpro.testing.FakeBinance`
(in this process, on 127.0.0.1) through the real ``ccxt.pro.binance`` client:

* **ccxt.pro alone**: a bare ``watch_trades`` loop that only counts (``tradesLimit`` raised so
  it loses nothing either);
* **plugin**: a full tickwire :class:`~tickwire.Pipeline` (watch loop, hand-off, normalize to
  Decimal events, gap detector, candle builder for 1m) into a counting sink.

The fake runs in the same event loop, so both figures include its cost; the ratio is the
plugin's overhead. Reference (2-vCPU sandbox, shared): ccxt.pro alone 30-46 k trades/s
(``shared/protocols/ccxt.md`` §3)::

    uv run --all-packages python bench/ccxtpro.py [--n 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from pathlib import Path
from tempfile import TemporaryDirectory

from tickwire.events import Event, Trade
from tickwire.pipeline import Pipeline
from tickwire.settings import Settings
from tickwire_ccxtpro import exchanges
from tickwire_ccxtpro.settings import CcxtSettings
from tickwire_ccxtpro.testing import FakeBinance

SYMBOL = "BTC/USDT"


class CountingSink:
    def __init__(self, n: int) -> None:
        self.n = n
        self.trades = 0
        self.done = asyncio.Event()

    async def open(self) -> None:
        pass

    async def write_batch(self, events: Sequence[Event]) -> None:
        self.trades += sum(1 for e in events if type(e) is Trade)
        if self.trades >= self.n:
            self.done.set()

    async def aclose(self) -> None:
        pass


async def alone(n: int) -> float:
    async with FakeBinance([SYMBOL], rate_per_s=0) as fake:
        config = CcxtSettings(**fake.source(trades_cache=20_000)).exchange_config()
        ex = exchanges.make_exchange("binance", config)
        try:
            await ex.load_markets()
            got = 0

            async def consume() -> None:
                nonlocal got
                while got < n:
                    got += len(await ex.watch_trades(SYMBOL))

            task = asyncio.create_task(consume())
            await fake.subscribed("btcusdt@aggTrade")
            start = time.perf_counter()
            await fake.burst(SYMBOL, n)
            await task
            elapsed = time.perf_counter() - start
        finally:
            await ex.close()
    return n / elapsed


async def plugin(n: int) -> float:
    with TemporaryDirectory() as tmp:
        async with FakeBinance([SYMBOL], rate_per_s=0) as fake:
            sink = CountingSink(n)
            settings = Settings(
                sources=[fake.source(channels=["trades"])],
                sinks=[],
                candles={"intervals": ["1m"]},
                bootstrap={"days": 0},
                runner={"deadletter": str(Path(tmp) / "dl")},
            )
            async with Pipeline(settings, sinks=[sink]):
                await fake.subscribed("btcusdt@aggTrade")
                start = time.perf_counter()
                await fake.burst(SYMBOL, n)
                await sink.done.wait()
                elapsed = time.perf_counter() - start
    return n / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="trades in the burst")
    args = parser.parse_args()
    exchanges.ccxt_pro()  # import ccxt once, outside the timings
    bare = await alone(args.n)
    through = await plugin(args.n)
    print(f"ccxt.pro alone : {bare:10,.0f} trades/s   (reference 30-46 k/s, protocols/ccxt.md)")
    print(f"tickwire plugin: {through:10,.0f} trades/s   ({through / bare:.0%} of ccxt.pro alone)")


if __name__ == "__main__":
    asyncio.run(main())
