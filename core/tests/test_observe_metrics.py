"""/metrics, /healthz and /readyz end to end: the jsonfeed fake → the runner → a scrape."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import httpx
import jsonfeed
import pytest
from jsonfeed import FakeFeed
from prometheus_client.parser import text_string_to_metric_families

from tickwire import Pipeline
from tickwire._runner.connect import State
from tickwire._runner.normalize import LATENCY_SAMPLE
from tickwire.observe import HealthPolicy, check_health, parse_listen, serve_metrics
from tickwire.settings import ConfigError
from tickwire.testing import MemorySink

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def source(feed: FakeFeed) -> dict[str, object]:
    return {"provider": "jsonfeed", "symbols": ["AAA", "BBB"], "ws_url": feed.ws_url}


async def scrape(url: str) -> tuple[Samples, dict[str, str]]:
    """Every sample of ``/metrics``, by (name, labels), and every family's type."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    types: dict[str, str] = {}
    for family in text_string_to_metric_families(response.text):
        types[family.name] = family.type
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return samples, types


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


async def wait_until(check: Callable[[], bool], timeout: float = 10) -> None:
    with anyio.fail_after(timeout):
        while not check():
            await anyio.sleep(0.02)


async def http_get(url: str) -> tuple[int, Any]:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    return response.status_code, response.json()


async def test_scraped_counters_match_the_frames_the_fake_sent(
    feed: FakeFeed, make_pipeline: Callable[..., Pipeline], memory_sink: MemorySink
) -> None:
    pipeline = make_pipeline([source(feed)], intervals=(), plugins=[jsonfeed], entry_points=False)
    async with pipeline, serve_metrics(pipeline, "127.0.0.1:0") as url:
        assert url.startswith("http://127.0.0.1:")
        await feed.wait_clients()
        sent = {"AAA": 0, "BBB": 0}
        for i in range(32):
            symbol = "AAA" if i % 3 else "BBB"
            await feed.trade(symbol, f"{100 + i}.5", "0.25")
            sent[symbol] += 1
        await feed.send_raw("{not json")
        await feed.send_raw('{"type": "trade", "s": "AAA"}')
        await feed.send_raw('{"type": "trade", "s": "AAA", "p": "-1", "q": "1", "t": 1}')
        await wait_until(lambda: pipeline.metrics.value("sink_rows_total") >= 32)
        await wait_until(lambda: pipeline.metrics.value("malformed_total") >= 3)
        samples, types = await scrape(url)

        assert types["tickwire_events"] == "counter"
        assert get(samples, "tickwire_events_total", provider="jsonfeed", kind="trade") == 32
        assert len(memory_sink.of("trade")) == 32
        assert get(samples, "tickwire_malformed_total", provider="jsonfeed") == 3
        assert get(samples, "tickwire_sink_rows_total", sink="MemorySink") == 32
        batches = get(samples, "tickwire_sink_batches_total", sink="MemorySink")
        assert batches == memory_sink.batches
        # The write-time histogram: one observation per batch, cumulative buckets up to +Inf.
        assert types["tickwire_sink_write_seconds"] == "histogram"
        assert get(samples, "tickwire_sink_write_seconds_count", sink="MemorySink") == batches
        assert get(samples, "tickwire_sink_write_seconds_bucket", sink="MemorySink", le="+Inf") == (
            batches
        )
        # One frame in LATENCY_SAMPLE feeds the latency histogram (32 frames carried a trade).
        assert get(samples, "tickwire_latency_seconds_count", provider="jsonfeed") == (
            32 // LATENCY_SAMPLE
        )
        buckets = sorted(
            (float(dict(lab)["le"]), v)
            for (name, lab), v in samples.items()
            if name == "tickwire_latency_seconds_bucket"
        )
        assert [v for _, v in buckets] == sorted(v for _, v in buckets)
        # Live state, read at scrape time.
        ids = {"source": "jsonfeed", "connection": "jsonfeed#0"}
        assert get(samples, "tickwire_connection_up", **ids) == 1
        assert get(samples, "tickwire_connection_state", state="connected", **ids) == 1
        assert get(samples, "tickwire_connection_state", state="reconnecting", **ids) == 0
        assert get(samples, "tickwire_sink_writable", sink="MemorySink") == 1
        assert get(samples, "tickwire_sink_queued", sink="MemorySink") == 0
        assert get(samples, "tickwire_healthy") == 1
        assert get(samples, "tickwire_ready") == 1
        assert not any(name == "tickwire_reconnects_total" for name, _ in samples)

        # A dropped connection is counted once, with its reason, and the stream goes on.
        await feed.drop_connections()
        await wait_until(lambda: pipeline.metrics.value("reconnects_total") >= 1)
        await feed.wait_clients()
        await wait_until(lambda: pipeline.connections[0].state is State.CONNECTED)
        await feed.trade("AAA", "200", "1")
        await wait_until(lambda: pipeline.metrics.value("sink_rows_total") >= 33)
        samples, _ = await scrape(url)
        reconnects = {
            dict(lab)["reason"]: v
            for (name, lab), v in samples.items()
            if name == "tickwire_reconnects_total"
        }
        assert sum(reconnects.values()) == 1, reconnects
        assert get(samples, "tickwire_events_total", provider="jsonfeed", kind="trade") == 33


async def test_healthz_names_an_unwritable_sink_and_recovers(
    feed: FakeFeed, make_pipeline: Callable[..., Pipeline], memory_sink: MemorySink
) -> None:
    pipeline = make_pipeline([source(feed)], intervals=(), plugins=[jsonfeed], entry_points=False)
    async with pipeline, serve_metrics(pipeline, "127.0.0.1:0") as url:
        await feed.wait_clients()
        await wait_until(lambda: pipeline.connections[0].state is State.CONNECTED)
        status, body = await http_get(f"{url}/healthz")
        assert (status, body["status"], body["problems"]) == (200, "ok", [])
        memory_sink.fail_next(3)
        await feed.trade("AAA", "1", "1")
        await wait_until(lambda: not pipeline.running_sinks[0].writable)
        status, body = await http_get(f"{url}/healthz")
        assert status == 503
        assert body["status"] == "unhealthy"
        assert [p["sink"] for p in body["problems"]] == ["MemorySink"]
        await wait_until(lambda: pipeline.running_sinks[0].writable)
        status, body = await http_get(f"{url}/healthz")
        assert status == 200
        assert len(memory_sink.of("trade")) == 1


async def test_readyz_waits_for_a_first_connection(
    make_pipeline: Callable[..., Pipeline], memory_sink: MemorySink
) -> None:
    # Nothing listens on port 1: the connection keeps failing, so the pipeline is never ready.
    dead = {"provider": "jsonfeed", "symbols": ["AAA"], "ws_url": "ws://127.0.0.1:1"}
    pipeline = make_pipeline([dead], intervals=(), plugins=[jsonfeed], entry_points=False)
    async with pipeline, serve_metrics(pipeline, "127.0.0.1:0") as url:
        await wait_until(lambda: pipeline.metrics.value("reconnects_total") >= 2)
        await wait_until(lambda: pipeline.running_sinks[0].writable)
        status, body = await http_get(f"{url}/readyz")
        assert status == 503
        assert body == {
            "status": "waiting",
            "waiting_for": {"connections": ["jsonfeed#0"], "sinks": []},
        }
        samples, _ = await scrape(url)
        assert get(samples, "tickwire_ready") == 0
        refused = get(samples, "tickwire_reconnects_total", source="jsonfeed", reason="refused")
        assert refused >= 2


async def test_readyz_latches_once_connected(
    feed: FakeFeed, make_pipeline: Callable[..., Pipeline]
) -> None:
    pipeline = make_pipeline([source(feed)], intervals=(), plugins=[jsonfeed], entry_points=False)
    async with pipeline, serve_metrics(pipeline, "127.0.0.1:0") as url:
        await feed.wait_clients()
        await wait_until(lambda: pipeline.connections[0].state is State.CONNECTED)
        assert (await http_get(f"{url}/readyz"))[0] == 200
        await feed.drop_connections()
        await wait_until(lambda: pipeline.metrics.value("reconnects_total") >= 1)
        # Still ready: an outage is a matter for /healthz.
        status, body = await http_get(f"{url}/readyz")
        assert (status, body["status"]) == (200, "ready")


def test_health_policy_is_three_backoff_caps_of_downtime(
    make_pipeline: Callable[..., Pipeline],
) -> None:
    pipeline = make_pipeline(
        [{"provider": "jsonfeed", "symbols": ["AAA"]}],
        plugins=[jsonfeed],
        entry_points=False,
        runner={"backoff_max": "2s"},
    )
    for rs in pipeline.running_sinks:
        rs.writable = True
    conn = pipeline.connections[0]
    conn.state = State.RECONNECTING
    conn.down_since = 1000.0
    assert HealthPolicy().grace_for(pipeline) == 6.0
    assert check_health(pipeline, now=1005.9).ok
    late = check_health(pipeline, now=1006.1)
    assert not late.ok
    assert late.problems[0]["connection"] == "jsonfeed#0"
    assert "reconnecting for 6.1 s" in late.problems[0]["problem"]
    assert check_health(pipeline, policy=HealthPolicy(down_grace=60), now=1006.1).ok
    conn.state = State.CONNECTED
    conn.down_since = None
    assert check_health(pipeline, now=5000).ok
    conn.state = State.STOPPED
    assert check_health(pipeline, now=5000).problems[0]["problem"] == "stopped"


async def test_http_edges(make_pipeline: Callable[..., Pipeline]) -> None:
    pipeline = make_pipeline(
        [{"provider": "jsonfeed", "symbols": ["AAA"]}], plugins=[jsonfeed], entry_points=False
    )
    async with serve_metrics(pipeline, "127.0.0.1:0") as url, httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/nope")).status_code == 404
        assert (await client.post(f"{url}/metrics")).status_code == 405
        head = await client.head(f"{url}/metrics")
        assert head.status_code == 200 and head.content == b""
        om = await client.get(
            f"{url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert om.headers["content-type"].startswith("application/openmetrics-text")
        assert om.text.rstrip().endswith("# EOF")
        # Not running yet: no sink is open, so neither healthy nor ready.
        assert (await client.get(f"{url}/healthz")).status_code == 503
        assert (await client.get(f"{url}/readyz")).status_code == 503


def test_parse_listen() -> None:
    assert parse_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert parse_listen(":9464") == ("127.0.0.1", 9464)
    assert parse_listen("9464") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464") == ("::1", 9464)
    for bad in ("127.0.0.1:http", "::1:9464", "host:99999", ""):
        with pytest.raises(ConfigError, match=r"metrics\.listen"):
            parse_listen(bad)
