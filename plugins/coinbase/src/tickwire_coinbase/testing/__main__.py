"""``python -m tickwire_coinbase.testing [--port 8765] [--rate 10] [--replay FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib

from tickwire_coinbase.testing.server import FakeCoinbase


async def _main(args: argparse.Namespace) -> None:
    products = args.products.split(",")
    async with FakeCoinbase(products, seed=args.seed, port=args.port, any_product=True) as fake:
        print(f"READY ws_url = {fake.ws_url!r}  rest_url = {fake.rest_url!r}", flush=True)
        if args.replay:
            await fake.wait_subscribed(timeout=3600)
            await fake.replay(args.replay, speed=args.speed)
        else:
            fake.simulate(args.rate)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tickwire_coinbase.testing",
        description="Run a fake Coinbase Exchange (websocket feed + REST) on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--products", default="BTC-USD,ETH-USD", help="comma-separated")
    parser.add_argument("--rate", type=float, default=10.0, help="simulated trades per second")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--replay", help="play a recorded capture to the first subscriber")
    parser.add_argument("--speed", type=float, default=None, help="replay speed factor")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
