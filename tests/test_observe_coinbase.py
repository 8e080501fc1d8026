"""Observability with the real Coinbase plugin and its fake: scrape, and /healthz across an
outage of the fake exchange (stopped, then started again on the same port)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tickwire import Pipeline, Settings
from tickwire._runner.connect import State
from tickwire.observe import serve_metrics
from tickwire.testing import MemorySink
from tickwire_coinbase.testing import FakeCoinbase

pytestmark = pytest.mark.anyio


def pipeline_for(fake: FakeCoinbase, tmp_path: Path, sink: MemorySink) -> Pipeline:
    settings = Settings(
        sources=[
            {
                "provider": "coinbase",
                "symbols": ["BTC-USD", "ETH-USD"],
                "channels": ["trades"],
                "ws_url": fake.ws_url,
                "rest_url": fake.rest_url,
            }
        ],
        sinks=[],
        candles={"intervals": []},
        bootstrap={"days": 0},
        runner={
            "backoff_initial": "50ms",
            "backoff_max": "300ms",
            "deadletter": str(tmp_path / "deadletter"),
        },
    )
    return Pipeline(settings, sinks=[sink])


async def wait_until(check: Callable[[], bool], timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


async def metric(client: httpx.AsyncClient, url: str, name: str, **labels: str) -> float:
    text = (await client.get(f"{url}/metrics")).text
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and labels.items() <= s.labels.items():
                total += s.value
    return total


async def test_counters_and_healthz_across_an_outage_of_the_exchange(tmp_path: Path) -> None:
    sink = MemorySink()
    fake = FakeCoinbase(["BTC-USD", "ETH-USD"], history_days=0)
    await fake.__aenter__()
    port = fake.port
    try:
        pipeline = pipeline_for(fake, tmp_path, sink)
        async with (
            pipeline,
            serve_metrics(pipeline, "127.0.0.1:0") as url,
            httpx.AsyncClient() as client,
        ):
            await fake.wait_subscribed()
            await wait_until(lambda: pipeline.connections[0].state is State.CONNECTED)
            for i in range(10):
                await fake.trade("BTC-USD", f"65000.{i}", "0.5", "buy")
            for i in range(4):
                await fake.trade("ETH-USD", f"3000.{i}", "2", "sell")
            await wait_until(lambda: len(sink.of("trade")) == 14)
            await wait_until(lambda: pipeline.metrics.value("sink_rows_total") >= 14)
            assert await metric(client, url, "tickwire_events_total", kind="trade") == 14
            assert await metric(client, url, "tickwire_events_total", provider="coinbase") == 14
            assert await metric(client, url, "tickwire_sink_rows_total", sink="MemorySink") == 14
            assert await metric(client, url, "tickwire_malformed_total") == 0
            health = await client.get(f"{url}/healthz")
            assert health.status_code == 200, health.text
            assert (await client.get(f"{url}/readyz")).status_code == 200

            # The exchange goes away: once the connection has been down for longer than
            # 3 x backoff_max (0.9 s), /healthz says so and names the connection.
            await fake.aclose()
            with anyio.fail_after(15):
                while (health := await client.get(f"{url}/healthz")).status_code == 200:
                    await anyio.sleep(0.05)
            assert health.status_code == 503
            body = health.json()
            assert body["status"] == "unhealthy"
            assert [p["connection"] for p in body["problems"]] == ["coinbase#0"]
            assert body["problems"][0]["state"] == "reconnecting"
            assert body["problems"][0]["last_error"]
            assert await metric(client, url, "tickwire_connection_up") == 0
            assert await metric(client, url, "tickwire_healthy") == 0
            assert await metric(client, url, "tickwire_reconnects_total", source="coinbase") >= 2

            # Back on the same port: reconnected, healthy again, and the stream goes on.
            fake = FakeCoinbase(["BTC-USD", "ETH-USD"], history_days=0, port=port)
            await fake.__aenter__()
            with anyio.fail_after(15):
                while (health := await client.get(f"{url}/healthz")).status_code != 200:
                    await anyio.sleep(0.05)
            assert health.json()["problems"] == []
            await fake.wait_subscribed()
            await fake.trade("BTC-USD", "65100", "1", "buy")
            await wait_until(lambda: len(sink.of("trade")) == 15)
            assert await metric(client, url, "tickwire_events_total", kind="trade") == 15
            assert await metric(client, url, "tickwire_connection_up") == 1
    finally:
        await fake.aclose()
