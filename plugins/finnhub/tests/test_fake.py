"""The fake Finnhub as a plain websocket client sees it: limits, errors, pings, drops."""

from __future__ import annotations

import json
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from tickwire.protocols import Heartbeat, Notice
from tickwire_finnhub.normalize import FinnhubNormalizer
from tickwire_finnhub.subscribe import subscribe_message, unsubscribe_message
from tickwire_finnhub.testing import FakeFinnhub

pytestmark = pytest.mark.anyio


def url(fake: FakeFinnhub, key: str | None = None) -> str:
    return f"{fake.ws_url}?token={key or fake.api_key}"


async def recv(ws: ClientConnection) -> Any:
    return json.loads(await ws.recv())


async def test_unknown_token_is_refused() -> None:
    async with FakeFinnhub() as fake:
        with pytest.raises(websockets.InvalidStatus) as exc:
            async with connect(url(fake, "wrong")):
                pass
        assert exc.value.response.status_code == 401
        assert fake.rejected_handshakes == 1


async def test_too_many_symbols_is_an_error_per_extra_symbol_and_unsubscribe_frees_a_slot() -> None:
    async with FakeFinnhub(max_symbols=2) as fake, connect(url(fake)) as ws:
        for symbol in ("AAPL", "MSFT", "TSLA"):
            await ws.send(subscribe_message(symbol))
        assert await recv(ws) == {"msg": "Subscribing to too many symbols", "type": "error"}
        await fake.wait_for(lambda f: len(f.live[0].received) == 3)
        assert fake.live[0].subscribed == ["AAPL", "MSFT"]
        # The over-limit symbol gets no data; the others go on.
        await fake.send_trades(
            [{"s": "TSLA", "p": "1", "t": 1, "v": 1}, {"s": "AAPL", "p": "2", "t": 2, "v": 1}]
        )
        assert await recv(ws) == {"data": [{"p": 2, "s": "AAPL", "t": 2, "v": 1}], "type": "trade"}
        await ws.send(unsubscribe_message("MSFT"))
        await ws.send(subscribe_message("TSLA"))
        await fake.wait_for(lambda f: f.live[0].subscribed == ["AAPL", "TSLA"])


async def test_the_too_many_symbols_error_normalizes_to_a_notice() -> None:
    async with FakeFinnhub(max_symbols=1) as fake, connect(url(fake)) as ws:
        await ws.send(subscribe_message("AAPL"))
        await ws.send(subscribe_message("MSFT"))
        items = list(FinnhubNormalizer()(await ws.recv(), 0))
        assert items == [
            Notice("finnhub", "Subscribing to too many symbols", code="too_many_symbols")
        ]


@pytest.mark.parametrize("named", [False, True])
async def test_invalid_symbol(named: bool) -> None:
    async with (
        FakeFinnhub(symbols={"AAPL"}, name_symbol_in_errors=named) as fake,
        connect(url(fake)) as ws,
    ):
        await ws.send(subscribe_message("NOPE"))
        items = list(FinnhubNormalizer()(await ws.recv(), 0))
        assert items == [
            Notice(
                "finnhub",
                "Invalid symbol NOPE" if named else "Invalid symbol",
                symbol="NOPE" if named else None,
                code="invalid_symbol",
            )
        ]
        assert fake.live[0].subscribed == []


async def test_pings_on_the_configured_cadence_and_market_closed_sends_only_pings() -> None:
    async with FakeFinnhub(ping_interval=0.05, market_open=False) as fake, connect(url(fake)) as ws:
        await ws.send(subscribe_message("AAPL"))
        await ws.send(subscribe_message("BINANCE:BTCUSDT"))
        await fake.wait_subscribed(["AAPL", "BINANCE:BTCUSDT"])
        assert await fake.send_trades([{"s": "AAPL", "p": "1", "t": 1, "v": 1}]) == 0
        assert list(FinnhubNormalizer()(await ws.recv(), 0)) == [Heartbeat("finnhub", None)]
        # Crypto trades around the clock.
        assert await fake.send_trades([{"s": "BINANCE:BTCUSDT", "p": "1", "t": 1, "v": 1}]) == 1


async def test_mixed_symbol_message_and_v_zero_are_sent_as_given() -> None:
    async with FakeFinnhub() as fake, connect(url(fake)) as ws:
        for s in ("AAPL", "OANDA:EUR_USD"):
            await ws.send(subscribe_message(s))
        await fake.wait_subscribed(["AAPL", "OANDA:EUR_USD"])
        await fake.send_trades(
            [
                {"s": "AAPL", "p": "189.50", "t": 10, "v": 3, "c": ["1", "12"]},
                {"s": "OANDA:EUR_USD", "p": "1.08543", "t": 11, "v": 0},
            ]
        )
        raw = await ws.recv()
        assert raw == (
            '{"data":[{"p":189.50,"s":"AAPL","t":10,"v":3,"c":["1","12"]},'
            '{"p":1.08543,"s":"OANDA:EUR_USD","t":11,"v":0}],"type":"trade"}'
        )


@pytest.mark.parametrize(
    ("policy", "first_open", "second_open"),
    [("drop_new", True, False), ("drop_old", False, True), ("drop_both", False, False)],
)
async def test_second_connection_with_the_same_key(
    policy: str, first_open: bool, second_open: bool
) -> None:
    async with FakeFinnhub(second_connection=policy) as fake:  # type: ignore[arg-type]
        async with connect(url(fake)) as first:
            await fake.wait_for(lambda f: len(f.live) == 1)
            async with connect(url(fake)) as second:
                await fake.wait_for(lambda f: len(f.connections) == 2)
                for ws, stays in ((first, first_open), (second, second_open)):
                    if stays:
                        await ws.ping()
                    else:
                        with pytest.raises(websockets.ConnectionClosed):
                            await ws.recv()
        await fake.wait_for(lambda f: not f.live)


async def test_another_key_may_connect_beside() -> None:
    async with (
        FakeFinnhub(api_keys=["a", "b"]) as fake,
        connect(url(fake, "a")),
        connect(url(fake, "b")),
    ):
        await fake.wait_for(lambda f: len(f.live) == 2)


async def test_drop_connections_and_send_raw() -> None:
    async with FakeFinnhub() as fake, connect(url(fake)) as ws:
        await fake.wait_for(lambda f: len(f.live) == 1)
        await fake.send_raw("garbage")
        assert await ws.recv() == "garbage"
        await fake.drop_connections()
        with pytest.raises(websockets.ConnectionClosedError):
            await ws.recv()
