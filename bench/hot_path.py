"""CPU cost per frame of the pipeline's hot path, without the network.

Feeds pre-encoded Coinbase ``match`` frames straight into the normalize stage
(:class:`tickwire._runner.normalize.FrameHandler`: the coinbase normalizer, value checks, gap
detector, candle builder, fan-out into a running ``null`` sink), one frame per call and 64 per
call (``handle_batch``, as a connection's ``batches()`` delivers them), and prints µs per frame
next to the same frames through the coinbase normalizer alone (the floor of the stage; for 64
per call its ``leading_trades``, the batch fast path the stage uses)::

    uv run --all-packages python bench/hot_path.py [--n 200000]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from tickwire._plugins import Plugins
from tickwire._runner.normalize import FrameHandler
from tickwire._runner.sink import Fanout, RunningSink
from tickwire.builtin.sinks import NullSink
from tickwire.candles import CandleBuilder
from tickwire.deadletter import DeadLetter
from tickwire.gaps import GapDetector
from tickwire.metrics import Metrics
from tickwire.settings import SinkSettings


def frames(n: int) -> list[str]:
    out = []
    t0 = time.time()
    for i in range(n):
        product = ("BTC-USD", "ETH-USD")[i % 2]
        out.append(
            json.dumps(
                {
                    "type": "match",
                    "trade_id": 1000 + i // 2,
                    "sequence": 50_000 + i,
                    "maker_order_id": str(uuid.uuid4()),
                    "taker_order_id": str(uuid.uuid4()),
                    "time": datetime.fromtimestamp(t0 + i * 1e-4, UTC).strftime(
                        "%Y-%m-%dT%H:%M:%S.%fZ"
                    ),
                    "product_id": product,
                    "size": "0.01000000",
                    "price": f"{65000 + i % 100}.12",
                    "side": "buy" if i % 3 else "sell",
                }
            )
        )
    return out


async def stage(data: list[str], plugins: Plugins, source: Any, info: Any, batch: int) -> float:
    """CPU µs per frame through the normalize stage, ``batch`` frames per call."""
    metrics = Metrics()
    sink = RunningSink(SinkSettings(type="null"), NullSink(), metrics)
    fanout = Fanout([sink])
    handler = FrameHandler(
        "coinbase",
        "coinbase",
        plugins.normalizer(source, info),
        GapDetector("coinbase", sequential=True),
        CandleBuilder(["1m"]),
        fanout.publish,
        lambda gaps: None,
        DeadLetter(Path("/tmp/tw-bench-dl")),
        metrics,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(sink.run)
        await anyio.sleep(0.01)
        started = time.process_time()
        handle_batch = handler.handle_batch
        for i in range(0, len(data), batch):
            await handle_batch(data[i : i + batch])
            if i % 2048 < batch:
                await anyio.lowlevel.checkpoint()  # let the sink writer drain, as the loop would
        path = (time.process_time() - started) / len(data) * 1e6
        sink.close()
    assert sink.written >= len(data)
    return path


async def main(n: int) -> None:
    data = frames(n)
    plugins = Plugins()
    info = plugins.provider("coinbase")
    source = info.settings(provider="coinbase", symbols=["BTC-USD", "ETH-USD"])
    normalize = plugins.normalizer(source, info)

    started = time.process_time()
    for frame in data:
        normalize(frame, 0)
    floor = (time.process_time() - started) / n * 1e6
    print(f"coinbase normalizer alone: {floor:.2f} µs/frame")
    floors = {1: floor}
    leading = getattr(normalize, "leading_trades", None)
    if leading is not None:
        started = time.process_time()
        for i in range(0, n, 64):
            leading(data[i : i + 64], 0)
        floors[64] = (time.process_time() - started) / n * 1e6
        print(f"coinbase normalizer alone, leading_trades of 64 frames: {floors[64]:.2f} µs/frame")
    for batch in (1, 64):
        path = await stage(data, plugins, source, info, batch)
        base = floors.get(batch, floor)
        print(
            f"normalize stage, {batch} frame(s) per call (normalizer + checks + gaps + candles + "
            f"fan-out + null sink): {path:.2f} µs/frame; core's share {path - base:.2f} µs"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    anyio.run(main, parser.parse_args().n)
