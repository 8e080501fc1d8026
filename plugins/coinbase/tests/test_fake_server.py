"""The fake Exchange driven by the real client stages (no mocks: real sockets on 127.0.0.1)."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import websockets
from pydantic import ValidationError

import tickwire_coinbase
from tickwire._plugins import Plugins
from tickwire.events import BookDelta, BookSnapshot, Quote, Trade
from tickwire.protocols import (
    ConnectionFailed,
    Heartbeat,
    Item,
    MalformedFrame,
    Notice,
    Subscribed,
)
from tickwire.transport import WebSocketConnection
from tickwire_coinbase import CoinbaseNormalizer, CoinbaseSettings, CoinbaseSubscriber
from tickwire_coinbase.connect import connector_for
from tickwire_coinbase.subscribe import sign
from tickwire_coinbase.testing import FakeCoinbase

pytestmark = pytest.mark.anyio

SECRET = base64.b64encode(bytes(range(64))).decode()


def _source(fake: FakeCoinbase, symbols: list[str], **kw: Any) -> CoinbaseSettings:
    return CoinbaseSettings(symbols=symbols, ws_url=fake.ws_url, rest_url=fake.rest_url, **kw)


class Session:
    """One client connection through the plugin's own connect/subscribe/normalize stages.

    A reader task moves frames into a memory stream, so a test may stop waiting (timeouts)
    without closing the connection's frame iterator.
    """

    def __init__(self, conn: WebSocketConnection) -> None:
        self.conn = conn
        self.normalize = CoinbaseNormalizer()
        self.send, self.receive = anyio.create_memory_object_stream[Any](1000)

    async def read(self) -> None:
        try:
            async for frame in self.conn:
                await self.send.send(frame)
        except Exception as exc:
            await self.send.send(exc)
        finally:
            self.send.close()

    async def frame(self) -> Any:
        value = await self.receive.receive()
        if isinstance(value, Exception):
            raise value
        return value

    async def next(self, kind: type[Any], timeout: float = 5.0) -> Any:
        """The next item of ``kind`` (others are skipped)."""
        with anyio.fail_after(timeout):
            while True:
                for item in self.normalize(await self.frame(), time.time_ns()):
                    if isinstance(item, kind):
                        return item

    async def frames_for(self, seconds: float) -> list[Any]:
        frames: list[Any] = []
        with anyio.move_on_after(seconds):
            while True:
                frames.append(await self.frame())
        return frames

    async def collect(self, seconds: float) -> list[Item]:
        return [
            item
            for frame in await self.frames_for(seconds)
            for item in self.normalize(frame, time.time_ns())
        ]


@asynccontextmanager
async def session(source: CoinbaseSettings) -> AsyncIterator[Session]:
    async with connector_for(source).open(source.symbols) as conn:
        await CoinbaseSubscriber(source).subscribe(conn, source.symbols)
        s = Session(conn)
        with s.send, s.receive:
            async with anyio.create_task_group() as tg:
                tg.start_soon(s.read)
                yield s
                tg.cancel_scope.cancel()


async def test_plugin_is_found_through_its_entry_point() -> None:
    plugins = Plugins()
    info = plugins.provider("coinbase")
    assert info.settings is CoinbaseSettings
    assert info.capabilities.trade_ids == "sequential"
    assert "candles:1m" in info.capabilities.backfill
    source = CoinbaseSettings(symbols=["BTC-USD"])
    assert isinstance(plugins.subscriber(source, info), CoinbaseSubscriber)
    assert isinstance(plugins.normalizer(source, info), CoinbaseNormalizer)
    assert plugins.backfiller(source, info) is not None


async def test_simulator_serves_a_market() -> None:
    async with tickwire_coinbase.simulator() as keys:
        source = CoinbaseSettings(**{**keys, "symbols": ["BTC-USD", "DOGE-USD"]})
        async with session(source) as s:
            assert set((await s.next(Subscribed)).symbols) == {"BTC-USD", "DOGE-USD"}
            trade = await s.next(Trade)
            assert trade.symbol in ("BTC-USD", "DOGE-USD")


async def test_subscribe_ack_heartbeat_and_trades() -> None:
    async with FakeCoinbase(["BTC-USD", "ETH-USD"], heartbeat_interval=0.1) as fake:
        source = _source(fake, ["BTC-USD", "ETH-USD"], channels=["trades", "quotes", "book"])
        async with session(source) as s:
            ack = await s.next(Subscribed)
            assert set(ack.symbols) == {"BTC-USD", "ETH-USD"}
            assert fake.received == [
                {
                    "type": "subscribe",
                    "product_ids": ["BTC-USD", "ETH-USD"],
                    "channels": ["matches", "ticker", "level2_batch", "heartbeat"],
                }
            ]
            last = await s.next(Trade)  # last_match of a product
            assert last.trade_id == str(fake.last_trade_id(last.symbol))
            snapshot = await s.next(BookSnapshot)
            assert snapshot.bids[0][0] < snapshot.asks[0][0]
            published = await fake.trade("BTC-USD", "65000.25", "0.5", "sell")
            trade = await s.next(Trade)
            assert trade == Trade(
                "coinbase",
                "BTC-USD",
                published.ts,
                trade.received_ts,
                published.price,
                published.size,
                "sell",
                str(published.trade_id),
            )
            quote = await s.next(Quote)
            assert quote.ts == published.ts and quote.bid < quote.ask  # type: ignore[operator]
            delta = await s.next(BookDelta)
            assert delta.changes
            beat = await s.next(Heartbeat)
            assert beat.last_trade_id == str(fake.last_trade_id(beat.symbol or ""))


async def test_drop_then_reconnect_resubscribes() -> None:
    async with FakeCoinbase(["BTC-USD"]) as fake:
        source = _source(fake, ["BTC-USD"])
        async with session(source) as s:
            await s.next(Subscribed)
            await fake.drop_connections()
            with pytest.raises(websockets.ConnectionClosedError):
                await s.collect(5)
        async with session(source) as s:
            await s.next(Subscribed)
            last_id = fake.last_trade_id("BTC-USD")
            await fake.trade("BTC-USD", "1.5", "2")
            assert (await s.next(Trade)).trade_id == str(last_id)  # the last_match first
            assert (await s.next(Trade)).price == Decimal("1.5")
        assert len([m for m in fake.received if m["type"] == "subscribe"]) == 2


async def test_subscribe_deadline_disconnects() -> None:
    async with FakeCoinbase(["BTC-USD"], subscribe_deadline=0.3) as fake:
        source = _source(fake, ["BTC-USD"])
        async with connector_for(source).open(source.symbols) as conn:
            started = time.monotonic()
            with pytest.raises(websockets.ConnectionClosedError) as info:
                await _drain(conn)
            assert 0.25 < time.monotonic() - started < 3
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1008


async def _drain(conn: WebSocketConnection) -> None:
    async for _ in conn:
        pytest.fail("nothing is sent before a subscribe")


async def test_invalid_product_other_products_stay_subscribed() -> None:
    async with FakeCoinbase(["BTC-USD"]) as fake:
        source = _source(fake, ["BTC-USD", "NOPE-USD"], channels=["trades", "quotes"])
        async with session(source) as s:
            items = await s.collect(0.5)
            notices = [i for i in items if isinstance(i, Notice)]
            assert [n.symbol for n in notices] == ["NOPE-USD"]  # one per product, not channel
            (ack,) = [i for i in items if isinstance(i, Subscribed)]
            assert ack.symbols == ("BTC-USD",)


async def test_level2_without_auth_is_refused_with_a_hint() -> None:
    async with (
        FakeCoinbase(["BTC-USD"]) as fake,
        connector_for(_source(fake, ["BTC-USD"])).open(["BTC-USD"]) as conn,
    ):
        await conn.send('{"type":"subscribe","product_ids":["BTC-USD"],"channels":["level2"]}')
        s = Session(conn)
        with s.send, s.receive:
            async with anyio.create_task_group() as tg:
                tg.start_soon(s.read)
                notice = await s.next(Notice)
                tg.cancel_scope.cancel()
        assert notice.code == "auth" and "level2_batch" in notice.message


async def test_signed_level2_subscribe() -> None:
    creds = ("key-1", SECRET, "pass-1")
    async with FakeCoinbase(["BTC-USD"], credentials=creds) as fake:
        source = _source(
            fake,
            ["BTC-USD"],
            channels=["book"],
            book_channel="level2",
            api_key=creds[0],
            api_secret=creds[1],
            passphrase=creds[2],
        )
        async with session(source) as s:
            assert (await s.next(BookSnapshot)).symbol == "BTC-USD"
        (sent,) = fake.received
        assert isinstance(sent["timestamp"], str)
        assert sent["signature"] == sign(sent["timestamp"], SECRET)
        assert sent["channels"] == ["level2", "heartbeat"]
        subscriber = CoinbaseSubscriber(source)
        for secret in creds[1:]:
            assert secret not in repr(subscriber) and secret not in repr(source)


async def test_withheld_trades_are_a_hole_in_ids_and_heartbeats() -> None:
    async with FakeCoinbase(["BTC-USD"], heartbeat_interval=0.1) as fake:
        async with session(_source(fake, ["BTC-USD"])) as s:
            first = await s.next(Trade)
            fake.withhold_trades("BTC-USD", 3)
            for i in range(4):
                await fake.trade("BTC-USD", f"{100 + i}", "1")
            after = await s.next(Trade)
            assert int(after.trade_id) == int(first.trade_id) + 4  # ids +1..+3 never came
            # heartbeats report the newest id (one built just before may still be in flight)
            with anyio.fail_after(5):
                while (beat := await s.next(Heartbeat)).last_trade_id != after.trade_id:
                    assert int(beat.last_trade_id or 0) < int(after.trade_id)
        rest = [t.trade_id for t in fake.trades("BTC-USD")[-4:]]
        assert rest == list(range(int(first.trade_id) + 1, int(first.trade_id) + 5))


async def test_malformed_frames_and_stall() -> None:
    async with (
        FakeCoinbase(["BTC-USD"], heartbeat_interval=0.05) as fake,
        session(_source(fake, ["BTC-USD"])) as s,
    ):
        await s.next(Heartbeat)
        fake.stalled = True
        await anyio.sleep(0.1)
        await s.frames_for(0.05)  # what was in flight
        assert await s.frames_for(0.4) == []
        fake.stalled = False
        await fake.send_raw('{"type":"match","trade_id":"x"')
        with pytest.raises(MalformedFrame):
            await _normalize_until_malformed(s)


async def _normalize_until_malformed(s: Session) -> None:
    while True:
        s.normalize(await s.frame(), 0)


async def test_rejected_handshakes() -> None:
    async with FakeCoinbase(["BTC-USD"]) as fake:
        fake.reject_next_connections(1)
        source = _source(fake, ["BTC-USD"])
        with pytest.raises(ConnectionFailed) as info:
            async with connector_for(source).open(source.symbols):
                pass
        assert info.value.reason == "http"
        async with session(source) as s:
            await s.next(Subscribed)


async def test_replay_of_the_capture(capture: Path) -> None:
    products = [
        "SKL-USD",
        "SKL-BTC",
        "BAND-GBP",
        "NMR-EUR",
        "BAND-BTC",
        "YFI-BTC",
        "DASH-BTC",
        "NU-GBP",
        "CRV-EUR",
        "SKL-GBP",
    ]
    async with (
        FakeCoinbase(products, history_days=0.01) as fake,
        session(_source(fake, products, channels=["trades"])) as s,
    ):
        await s.next(Subscribed)
        async with anyio.create_task_group() as tg:
            tg.start_soon(fake.replay, capture)
            items = await s.collect(3)
    trades = [i for i in items if isinstance(i, Trade) and i.trade_id and int(i.trade_id) > 1e5]
    assert {t.symbol for t in trades} <= set(products)
    assert any(isinstance(i, BookSnapshot) for i in items)
    assert len({t.trade_id for t in trades}) >= 100  # the capture's 107 matches


async def test_rest_products_and_errors() -> None:
    async with (
        FakeCoinbase(["BTC-USD"]) as fake,
        httpx.AsyncClient(base_url=fake.rest_url) as client,
    ):
        products = (await client.get("/products")).json()
        assert [p["id"] for p in products] == ["BTC-USD"]
        missing = await client.get("/products/NOPE-USD/candles")
        assert missing.status_code == 404
        too_many = await client.get(
            "/products/BTC-USD/candles",
            params={
                "granularity": 60,
                "start": "2026-01-01T00:00:00Z",
                "end": "2026-01-01T05:01:00Z",
            },
        )
        assert too_many.status_code == 400
        assert "exceeds 300" in too_many.json()["message"]


def test_settings_validation(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_KEY", "API_SECRET", "PASSPHRASE"):
        monkeypatch.delenv(f"TICKWIRE_COINBASE_{name}", raising=False)
    with pytest.raises(ValidationError, match="all of api_key, api_secret and passphrase"):
        CoinbaseSettings(symbols=["BTC-USD"], api_key="k")
    with pytest.raises(ValidationError, match="level2_batch"):
        CoinbaseSettings(symbols=["BTC-USD"], channels=["book"], book_channel="level2")
    with pytest.raises(ValidationError, match="not base64"):
        CoinbaseSettings(symbols=["BTC-USD"], api_key="k", api_secret="%%%", passphrase="p")
    with pytest.raises(ValidationError, match="candles"):
        CoinbaseSettings(symbols=["BTC-USD"], channels=["candles"])
    monkeypatch.setenv("TICKWIRE_COINBASE_API_KEY", "env-key")
    monkeypatch.setenv("TICKWIRE_COINBASE_API_SECRET", SECRET)
    monkeypatch.setenv("TICKWIRE_COINBASE_PASSPHRASE", "env-pass")
    source = CoinbaseSettings(symbols=["BTC-USD"], channels=["book"], book_channel="level2")
    assert source.authenticated
    assert "env-pass" not in repr(source) and SECRET not in str(source.model_dump())
    assert source.ws_url == "wss://ws-feed.exchange.coinbase.com"
