"""One test per hook (datasette's rule, enforced by test_plugins.py)."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import jsonfeed
import pytest

from tickwire._plugins import Plugins
from tickwire.builtin.sinks import ConsoleSink, ConsoleSinkSettings, NullSink
from tickwire.events import Trade
from tickwire.hookspecs import hookimpl
from tickwire.protocols import Heartbeat, ProviderInfo, SinkInfo
from tickwire.settings import SinkSettings

ROOT = Path(__file__).parents[2]


def _jsonfeed_source(plugins: Plugins):
    info = plugins.provider("jsonfeed")
    return info.settings(provider="jsonfeed", symbols=["A"], ws_url="ws://127.0.0.1:9"), info


def test_hook_tickwire_register_providers() -> None:
    plugins = Plugins([jsonfeed], entry_points=False)
    info = plugins.providers["jsonfeed"]
    assert isinstance(info, ProviderInfo) and info.capabilities.trade_ids == "sequential"
    assert plugins.records[-1].providers == ["jsonfeed"]


def test_hook_tickwire_register_sinks() -> None:
    class Extra:
        @hookimpl
        def tickwire_register_sinks(self, register):
            register(SinkInfo("extra", SinkSettings, "an extra sink"))

    plugins = Plugins([Extra()], entry_points=False)
    assert plugins.sink("extra").description == "an extra sink"


@pytest.mark.anyio
async def test_hook_tickwire_connect(feed) -> None:
    plugins = Plugins([jsonfeed], entry_points=False)
    info = plugins.provider("jsonfeed")
    source = info.settings(provider="jsonfeed", symbols=["A"], ws_url=feed.ws_url)
    connector = plugins.connector(source, info)
    async with connector.open(["A"]) as conn:
        await conn.send('{"op": "subscribe", "symbols": ["A"]}')
        await feed.wait_clients()
        await feed.trade("A", "1.5")
        async for frame in conn:
            assert '"p": "1.5"' in frame
            break


@pytest.mark.anyio
async def test_hook_tickwire_subscribe(feed) -> None:
    plugins = Plugins([jsonfeed], entry_points=False)
    info = plugins.provider("jsonfeed")
    source = info.settings(provider="jsonfeed", symbols=["A", "B"], ws_url=feed.ws_url)
    async with plugins.connector(source, info).open(source.symbols) as conn:
        subscriber = plugins.subscriber(source, info)
        assert subscriber is not None
        await subscriber.subscribe(conn, ["A", "B"])
        await feed.wait_clients()
    assert feed.subscribes == [["A", "B"]]


def test_hook_tickwire_normalize() -> None:
    plugins = Plugins([jsonfeed], entry_points=False)
    source, info = _jsonfeed_source(plugins)
    normalize = plugins.normalizer(source, info)
    (trade,) = normalize('{"type":"trade","s":"A","p":"2.50","q":"1","t":7,"id":3}', 9)
    assert trade == Trade("jsonfeed", "A", 7, 9, Decimal("2.50"), Decimal(1), None, "3")
    assert normalize('{"type":"ping"}', 9) == [Heartbeat("jsonfeed")]


@pytest.mark.anyio
async def test_hook_tickwire_sink(capsys) -> None:
    plugins = Plugins(entry_points=False)
    null = plugins.sink_for(plugins.sink("null").settings(type="null"))
    assert isinstance(null, NullSink)
    console = plugins.sink_for(ConsoleSinkSettings(type="console", format="jsonl"))
    assert isinstance(console, ConsoleSink)
    await console.write_batch([Trade("p", "A", 1, 2, Decimal("1.10"), Decimal(1))])
    assert '"price":"1.10"' in capsys.readouterr().out


def test_hook_tickwire_backfill() -> None:
    plugins = Plugins([jsonfeed], entry_points=False)
    source, info = _jsonfeed_source(plugins)
    assert plugins.backfiller(source, info) is None  # jsonfeed has no history API

    class History:
        def fetch(self, gap):  # pragma: no cover - resolution only
            raise NotImplementedError

    class WithHistory:
        @hookimpl
        def tickwire_backfill(self, source, info):
            return History() if source.provider == "jsonfeed" else None

    plugins = Plugins([jsonfeed, WithHistory()], entry_points=False)
    assert isinstance(plugins.backfiller(source, info), History)


def test_hook_docs_are_current() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.anyio
async def test_websocket_query_tokens_never_reach_a_log_line(feed) -> None:
    import logging

    from tickwire.transport import WS_LOGGER, WebSocketConnector

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    WS_LOGGER.addHandler(handler)
    level = WS_LOGGER.level
    WS_LOGGER.setLevel(logging.DEBUG)
    try:
        async with WebSocketConnector(feed.ws_url + "/?token=SECRET123").open(["A"]) as conn:
            await conn.send('{"op": "subscribe", "symbols": ["A"]}')
            await feed.wait_clients()
        refused = WebSocketConnector("ws://127.0.0.1:1/?token=SECRET123")
        with pytest.raises(OSError) as err:
            async with refused.open(["A"]):
                pass
    finally:
        WS_LOGGER.removeHandler(handler)
        WS_LOGGER.setLevel(level)
    assert "SECRET123" not in str(err.value)
    lines = [r.getMessage() for r in records]
    assert any("GET /" in line for line in lines)  # the request line was logged...
    assert not any("SECRET123" in line for line in lines)  # ...without the token


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from tickwire.rest import retry_after

    assert retry_after({"Retry-After": "7"}) == 7.0
    assert retry_after({}) is None
    assert retry_after({"Retry-After": "soon"}) is None
    when = retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:30 GMT"}, now=1445412480.0)
    assert when == 30.0
