"""The normalizer on hand-off frames, and what ccxt could not read."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from tickwire.events import BookSnapshot, Candle, Gap, Quote, Trade
from tickwire.protocols import Heartbeat, MalformedFrame, Notice
from tickwire_ccxtpro.normalize import CcxtNormalizer
from tickwire_ccxtpro.subscribe import num

N = CcxtNormalizer("ccxt:binance")


def test_trades_keep_the_exchange_text() -> None:
    frame = orjson.dumps(
        {"k": "t", "s": "BTC/USDT", "rt": 5, "r": [["1", 1000, "30000.10", "0.00100000", "sell"]]}
    )
    (trade,) = N(frame, 9)
    assert trade == Trade(
        "ccxt:binance",
        "BTC/USDT",
        1000 * 10**6,
        5,
        Decimal("30000.10"),
        Decimal("0.001"),
        "sell",
        "1",
    )
    assert str(trade.price) == "30000.10"


def test_other_kinds() -> None:
    items = N(
        orjson.dumps(
            {
                "k": "c",
                "s": "X/Y",
                "i": "1m",
                "rt": 1,
                "r": [[60000, "1", "2", "0.5", "1.5", "3", True]],
            }
        ),
        0,
    )
    assert isinstance(items[0], Candle) and items[0].closed and items[0].source == "stream"
    (q,) = N(orjson.dumps({"k": "q", "s": "X/Y", "r": [1, "1", None, "2", "3"]}), 7)
    assert isinstance(q, Quote) and q.bid_size is None and q.received_ts == 7
    (b,) = N(orjson.dumps({"k": "b", "s": "X/Y", "ts": 1, "n": 9, "b": [["1", "2"]], "a": []}), 0)
    assert isinstance(b, BookSnapshot) and b.sequence == 9 and b.bids == [(Decimal(1), Decimal(2))]
    (g,) = N(
        orjson.dumps(
            {"k": "g", "s": "X/Y", "kind": "book", "start": 1, "end": 2, "reason": "sequence"}
        ),
        0,
    )
    assert isinstance(g, Gap)
    assert isinstance(N(b'{"k":"h"}', 0)[0], Heartbeat)
    (n,) = N(orjson.dumps({"k": "n", "s": "X/Y", "m": "BadSymbol: no"}), 0)
    assert isinstance(n, Notice) and n.symbol == "X/Y"


@pytest.mark.parametrize(
    "frame", ["{this is not json", "hello", '{"e":"trade"}', '{"k":"zz"}', '{"k":"t","s":"A"}']
)
def test_malformed(frame: str) -> None:
    with pytest.raises(MalformedFrame):
        N(frame, 0)


def test_num_is_the_shortest_round_trip() -> None:
    assert num(30000.37) == "30000.37"
    assert num(0.1 + 0.2) == "0.30000000000000004"  # not made up: that is the float ccxt holds
    assert num(None) is None and num(float("nan")) is None and num(5) == "5"
