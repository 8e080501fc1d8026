"""The Coinbase feed over both websocket transports (``websockets`` and ``picows``), on TLS.

The same fake Exchange (serving ``wss://`` with a test CA), the same pipeline, the same
assertions: exact rows, the close codes the runner tells apart, keep-alive pings, failures with
their reasons, and no token in any log line.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import anyio
import pytest
import trustme

from tickwire.events import Candle, Trade
from tickwire.pipeline import Pipeline
from tickwire.protocols import ConnectionFailed
from tickwire.settings import Settings
from tickwire.testing.memory import MemorySink
from tickwire.transport import WS_LOGGER, WebSocketConnector
from tickwire_coinbase.testing import FakeCoinbase

pytestmark = pytest.mark.anyio
TRANSPORTS = ("websockets", "picows")
S = 1_000_000_000


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def settings(fake: FakeCoinbase, ca_file: Path, transport: str, tmp_path: Path) -> Settings:
    return Settings(
        sources=[
            {
                "provider": "coinbase",
                "symbols": ["BTC-USD", "ETH-USD"],
                "ws_url": fake.ws_url,
                "rest_url": fake.rest_url,
                "ca_file": str(ca_file),
                "transport": transport,
            }
        ],
        sinks=[],
        candles={"intervals": ["1m"]},
        bootstrap={"days": 0},
        runner={"deadletter": str(tmp_path / "dead")},
    )


@pytest.fixture
def ws_log() -> Iterator[list[logging.LogRecord]]:
    """Every record of the websocket logger (both transports log through it), at DEBUG."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(logging.DEBUG)
    level = WS_LOGGER.level
    WS_LOGGER.addHandler(handler)
    WS_LOGGER.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        WS_LOGGER.removeHandler(handler)
        WS_LOGGER.setLevel(level)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_feed_end_to_end_over_tls(
    transport: str, server_tls: ssl.SSLContext, ca_file: Path, tmp_path: Path
) -> None:
    """Exact trades, their candle, a trade-id hole filled over https, a reconnect after a drop."""
    async with FakeCoinbase(
        ["BTC-USD", "ETH-USD"], ssl_context=server_tls, heartbeat_interval=0.2, history_days=0.2
    ) as fake:
        assert fake.ws_url.startswith("wss://")
        memory = MemorySink()
        async with Pipeline(
            settings(fake, ca_file, transport, tmp_path), entry_points=True, sinks=[memory]
        ) as pipeline:
            await fake.wait_subscribed()
            base = time.time_ns() // S * S
            sent = [
                await fake.trade("BTC-USD", "65000.10", "0.50000000", "buy", ts=base + 1_000),
                await fake.trade("BTC-USD", "64999.99", "0.01", "sell", ts=base + 2_000),
                await fake.trade("ETH-USD", "3100.5", "2", "buy", ts=base + 3_000),
            ]
            fake.withhold_trades("BTC-USD", 2)
            hidden = [await fake.trade("BTC-USD", f"{65001 + i}", "1") for i in range(2)]
            after = await fake.trade("BTC-USD", "65010", "1")
            wanted = {str(t.trade_id) for t in [*sent, *hidden, after]}

            def arrived(m: MemorySink) -> bool:
                return wanted <= {e.trade_id for e in m.events if isinstance(e, Trade)}

            await memory.wait_for(arrived, 15)
            await fake.drop_connections()
            await fake.wait_subscribed(timeout=15)
            again = await fake.trade("ETH-USD", "3101", "1")
            await memory.wait_for(
                lambda m: any(
                    isinstance(e, Trade) and e.trade_id == str(again.trade_id) for e in m.events
                ),
                15,
            )
            assert pipeline.metrics.value("reconnects_total") >= 1
    trades = {e.trade_id: e for e in memory.events if isinstance(e, Trade)}
    first = trades[str(sent[0].trade_id)]
    assert (first.symbol, first.price, first.size, first.side, first.ts) == (
        "BTC-USD",
        Decimal("65000.10"),
        Decimal("0.50000000"),
        "buy",  # the taker's side (the wire carries the maker's)
        base + 1_000,
    )
    assert trades[str(sent[2].trade_id)].price == Decimal("3100.5")
    candles = [
        e
        for e in memory.events
        if isinstance(e, Candle) and e.symbol == "ETH-USD" and e.start == base // (60 * S) * 60 * S
    ]
    assert candles and candles[-1].open == Decimal("3100.5")


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("code", "reason", "verdict"),
    [(1000, "bye", "closed"), (4029, "slow down", "rate_limited"), (1011, "oops", "error")],
)
async def test_close_codes_are_told_apart(
    transport: str,
    code: int,
    reason: str,
    verdict: str,
    server_tls: ssl.SSLContext,
    ca_file: Path,
    tmp_path: Path,
) -> None:
    async with FakeCoinbase(["BTC-USD"], ssl_context=server_tls) as fake:
        memory = MemorySink()
        async with Pipeline(
            settings(fake, ca_file, transport, tmp_path), entry_points=True, sinks=[memory]
        ) as pipeline:
            await fake.wait_subscribed()
            await fake.close_connections(code, reason)
            with anyio.fail_after(10):
                while not pipeline.metrics.value("reconnects_total"):
                    await anyio.sleep(0.01)
            assert pipeline.metrics.value("reconnects_total", reason=verdict) == 1
            runner = pipeline.connections[0]
            assert runner.rate_limited is (verdict == "rate_limited")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_close_reason_and_the_answer_to_a_close(
    transport: str, server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    async with FakeCoinbase(["BTC-USD"], ssl_context=server_tls) as fake:
        connector = WebSocketConnector(fake.ws_url, ca_file=ca_file, transport=transport)  # type: ignore[arg-type]
        async with connector.open(["BTC-USD"]) as conn:
            await conn.send(
                '{"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matches"]}'
            )
            await fake.wait_subscribed()
            await fake.close_connections(1000, "maintenance")
            frames = [f async for batch in conn.batches() for f in batch]  # type: ignore[attr-defined]
            assert any('"subscriptions"' in f for f in frames)
            assert conn.close_reason == "1000 maintenance"  # type: ignore[attr-defined]
        with anyio.fail_after(5):
            while fake.connections:
                await anyio.sleep(0.01)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_keepalive_pings_go_out_on_a_silent_connection(
    transport: str, server_tls: ssl.SSLContext, ca_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="websockets.server")
    async with FakeCoinbase(["BTC-USD"], ssl_context=server_tls) as fake:
        connector = WebSocketConnector(
            fake.ws_url,
            ca_file=ca_file,
            transport=transport,
            ping_interval=0.2,
            ping_timeout=0.2,  # type: ignore[arg-type]
        )
        async with connector.open(["BTC-USD"]) as conn:
            await conn.send(
                '{"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matches"]}'
            )
            await fake.wait_subscribed()
            fake.stalled = True  # nothing but pongs from now on
            with anyio.fail_after(5):
                while not any("< PING" in r.getMessage() for r in caplog.records):
                    await anyio.sleep(0.05)
            assert fake.connections == 1  # every ping was answered: the connection lives


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_failures_carry_their_reason_and_no_token(
    transport: str,
    server_tls: ssl.SSLContext,
    ca_file: Path,
    ws_log: list[logging.LogRecord],
) -> None:
    async with FakeCoinbase(["BTC-USD"], ssl_context=server_tls) as fake:
        url = fake.ws_url + "/?token=SECRET123"
        # an untrusted certificate
        with pytest.raises(ConnectionFailed) as untrusted:
            async with WebSocketConnector(url, transport=transport).open(["A"]):  # type: ignore[arg-type]
                pass
        assert untrusted.value.reason == "tls"
        # an HTTP answer instead of a websocket
        fake.reject_next_connections(1)
        with pytest.raises(ConnectionFailed) as http:
            async with WebSocketConnector(url, ca_file=ca_file, transport=transport).open(["A"]):  # type: ignore[arg-type]
                pass
        assert http.value.reason == "http"
        # nobody listening
        with pytest.raises(ConnectionFailed) as refused:
            async with WebSocketConnector(
                "wss://127.0.0.1:1/?token=SECRET123",
                ca_file=ca_file,
                transport=transport,  # type: ignore[arg-type]
            ).open(["A"]):
                pass
        assert refused.value.reason == "refused"
        # a working connection, logged at DEBUG
        async with WebSocketConnector(url, ca_file=ca_file, transport=transport).open(
            ["A"]
        ) as conn:  # type: ignore[arg-type]
            await conn.send(
                '{"type": "subscribe", "product_ids": ["BTC-USD"], "channels": ["matches"]}'
            )
            await fake.wait_subscribed()
    for error in (untrusted, http, refused):
        assert "SECRET123" not in str(error.value)
    assert ws_log, "the transport logged nothing at DEBUG"
    assert not any("SECRET123" in r.getMessage() for r in ws_log)


async def test_picows_refuses_compression() -> None:
    with pytest.raises(ValueError, match="permessage-deflate"):
        WebSocketConnector("wss://127.0.0.1:1", compression="deflate", transport="picows")
